"""An ensemble of cross-validation fold models as one MONAI inferer (``scripts.ensemble.EnsembleInferer``).

This file is synced from ``sum_monai/bundle/bundle_scripts/ensemble.py``; edit it there.

A bundle trained by ``sum-monai cv`` ships its fold models: ``models/model.pt`` (fold 0, the
network the configs load, what the model zoo checks) and ``models/fold1.pt`` ... (the others,
each a plain state dict under the zoo's size limit). The inferer runs the configured network and
every further member on the same input, each through ``inferer`` (e.g. the mirror pass), and
returns the log of the mean of their softmax probabilities, so the bundle's usual
``Activationsd(softmax=True)`` afterwards yields the ensemble's mean probability, as nnU-Net
averages its folds. A bundle folder without ``fold*.pt`` files (a single training run) runs its
one network unchanged. Members found beside the checkpoint are looked up again on every call
(a glob and a stat), so a long-lived inferer (MONAI Label parses it once per server) follows a
retraining that moved the fold files away or replaced them. MONAI has no inferer over several
networks, hence this one.
"""

from __future__ import annotations

import copy
import glob
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer

__all__ = ["EnsembleInferer", "member_files"]


def member_files(checkpoint: str) -> list[str]:
    """The further members beside ``checkpoint``: ``fold*.pt`` in its folder, sorted."""
    return sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "fold*.pt")))


class EnsembleInferer(Inferer):
    """Mean softmax of the configured network and the networks in ``weights`` (as log-probabilities).

    Args:
        network_def: a network of the configured architecture (give it as ``"%network_def"``,
            a copy of the config, not the configured instance); each member is a deep copy of it
            with the weights of one file of ``weights``.
        checkpoint: the configured network's checkpoint (``@ckpt_path``): the further members are
            the ``fold*.pt`` files beside it (:func:`member_files`); none there, none added.
        weights: state-dict files of the further members instead (overrides ``checkpoint``);
            loaded once, tensors only (``torch.load(weights_only=True)``).
        inferer: run for every member (default :class:`monai.inferers.SimpleInferer`), e.g. the
            mirror pass ``scripts.tta.FlipTTAInferer``.

    Example::

        >>> import torch
        >>> net = torch.nn.Conv2d(1, 2, 3, padding=1)
        >>> EnsembleInferer(torch.nn.Conv2d(1, 2, 3, padding=1), weights=[])(torch.rand(1, 1, 8, 8), net).shape
        torch.Size([1, 2, 8, 8])
    """

    def __init__(
        self,
        network_def: torch.nn.Module,
        checkpoint: str | None = None,
        weights: Sequence[str] | None = None,
        inferer: Inferer | None = None,
    ) -> None:
        super().__init__()
        self.network_def = network_def
        self.checkpoint = None if weights is not None or not checkpoint else str(checkpoint)
        self.weights = [str(w) for w in (member_files(checkpoint) if self.checkpoint else weights or [])]
        self.inferer = inferer or SimpleInferer()
        self._members: list[torch.nn.Module] | None = None
        self._loaded: tuple = ()
        self._convert: Callable[[torch.nn.Module, str], torch.nn.Module] | None = None

    def convert_members(self, convert: Callable[[torch.nn.Module, str], torch.nn.Module] | None) -> None:
        """Run every further member as ``convert(network, weights_file)`` returns it (e.g. an
        exported runtime of the same network); applied again whenever the members are reloaded."""
        self._convert, self._members = convert, None

    def _current(self) -> tuple:
        """(path, mtime) of each member now; the files beside the checkpoint are looked up again."""
        if self.checkpoint:
            self.weights = member_files(self.checkpoint)
        return tuple((path, os.path.getmtime(path) if os.path.exists(path) else None) for path in self.weights)

    def _load_members(self, device: torch.device) -> list[torch.nn.Module]:
        current = self._current()
        if self._members is None or current != self._loaded:
            self._members, self._loaded = [], current
            for path in self.weights:
                net = copy.deepcopy(self.network_def)
                state = torch.load(path, map_location="cpu", weights_only=True)
                state = state.get("model", state) if isinstance(state, dict) else state
                try:
                    net.load_state_dict(state)
                except RuntimeError as err:
                    raise ValueError(
                        f"{path}: the weights do not fit the configured network: {str(err).splitlines()[0]}"
                    ) from err
                self._members.append(self._convert(net.eval(), path) if self._convert else net.eval())
        for net in self._members:
            net.to(device)
        return self._members

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        extra = self._load_members(inputs.device)
        if getattr(network, "cpu_autocast", False):  # scripts.precision.CpuAutocast: every member alike
            extra = [type(network)(net) for net in extra]
        members = [network, *extra]
        total = None
        for net in members:
            probs = torch.softmax(self.inferer(inputs, net, *args, **kwargs).float(), dim=1)
            total = probs if total is None else total + probs
        assert total is not None
        return torch.log((total / len(members)).clamp_min(1e-8))
