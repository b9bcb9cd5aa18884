"""Model FLOPs, counted by torch's own ``FlopCounterMode`` (a multiply-add counts as 2)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_flops(model: torch.nn.Module, example: torch.Tensor) -> int:
    """Floating-point operations of one forward pass of ``model`` on ``example`` (whole batch).

    Only the operators torch knows a formula for are counted (convolutions, transposed
    convolutions, matmuls: where nearly all the work of a UNet is); norms and activations are not.

    Example:
        >>> count_flops(torch.nn.Linear(4, 3, bias=False), torch.zeros(2, 4))
        48
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
