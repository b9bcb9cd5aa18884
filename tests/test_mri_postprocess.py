"""The MRI bundle's faster post-processing gives what MONAI's own transforms give.

``scripts/postprocess.py`` replaces ``Invertd`` (all channels) by ``InvertForegroundd`` (the
lesion channel, background derived) and ``AsDiscreted(argmax=True)`` by ``ChannelArgmaxd``; the
masks must not change, on a resampled grid with an anisotropic spacing like a DCE protocol's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.scripts import import_bundle_scripts

MRI = Bundle.find("breast_mri_seg_3d")


@pytest.fixture(scope="module")
def post():
    return import_bundle_scripts(MRI.root, "postprocess")


@pytest.mark.parametrize("classes", [2, 3])
def test_faster_inversion_and_argmax_equal_monais(post, classes: int) -> None:
    from monai.data import MetaTensor
    from monai.transforms import AsDiscreted, Compose, Invertd, Orientationd, Spacingd

    torch.manual_seed(0)
    image = MetaTensor(torch.rand(2, 45, 38, 21), affine=torch.tensor(np.diag([-0.76, 0.76, 1.1, 1.0])))
    pre = Compose([Orientationd("image", axcodes="RAS"), Spacingd("image", pixdim=(1.0, 1.0, 2.0), mode="bilinear")])
    data = pre({"image": image})
    logits = torch.nn.functional.avg_pool3d(torch.randn(1, classes, *data["image"].shape[1:]) * 6, 3, 1, 1)[0]
    probs = torch.softmax(logits, 0)
    results = {}
    for name, invert, argmax in (
        ("monai", Invertd, AsDiscreted("pred", argmax=True, dtype=torch.uint8)),
        ("ours", post.InvertForegroundd, post.ChannelArgmaxd("pred", dtype=torch.uint8)),
    ):
        d = dict(data, pred=MetaTensor(probs.clone(), meta=data["image"].meta))
        d = invert("pred", pre, orig_keys="image", nearest_interp=False, to_tensor=True)(d)
        inverted = d["pred"]
        labels = argmax(d)["pred"]
        results[name] = (inverted, labels)
    (p_ref, l_ref), (p_new, l_new) = results["monai"], results["ours"]
    assert p_new.shape == p_ref.shape == (classes, 45, 38, 21)
    torch.testing.assert_close(p_new.as_tensor(), p_ref.as_tensor(), atol=1e-5, rtol=0)
    assert torch.equal(l_new.as_tensor(), l_ref.as_tensor()) and l_new.dtype == torch.uint8
    assert l_new.shape == (1, 45, 38, 21) and 0 < int((l_ref > 0).sum()) < l_ref.numel()
    torch.testing.assert_close(l_new.affine, image.affine.to(l_new.affine.dtype))


def test_argmax_breaks_ties_to_the_lower_class_as_torch_does(post) -> None:
    probs = torch.tensor([[0.5, 0.2, 0.4], [0.5, 0.4, 0.2], [0.0, 0.4, 0.4]])[:, :, None]
    assert post.channel_argmax(probs)[0, :, 0].tolist() == torch.argmax(probs, 0)[:, 0].tolist() == [0, 1, 0]
