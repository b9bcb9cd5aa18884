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


def test_the_bundles_float32_resampling_equals_float64_within_rounding() -> None:
    """``Spacingd(dtype=float32)`` in the bundle's configs: the network input and its inverse as in float64."""
    from monai.data import MetaTensor
    from monai.transforms import Compose, Invertd, Spacingd

    from sum_monai.bundle.run import create_workflow

    parser = create_workflow(MRI, "inference").parser
    spatial = parser.get_parsed_content("spatial_transforms")
    spacing = next(t for t in spatial if isinstance(t, Spacingd))
    assert spacing.dtype == (torch.float32,)
    float64 = [Spacingd("image", pixdim=parser["pixdim"], mode="bilinear") if t is spacing else t for t in spatial]
    torch.manual_seed(0)
    image = MetaTensor(torch.rand(2, 45, 38, 21) * 1000, affine=torch.tensor(np.diag([-0.76, 0.76, 1.1, 1.0])))
    outputs = []
    for transforms in (Compose(spatial), Compose(float64)):
        data = transforms({"image": image.clone()})
        data["pred"] = MetaTensor(torch.softmax(data["image"] / 500, 0), meta=data["image"].meta)
        back = Invertd("pred", transforms, orig_keys="image", nearest_interp=False)(data)["pred"]
        outputs.append((data["image"], back))
    (x32, back32), (x64, back64) = outputs
    assert x32.shape == x64.shape and back32.shape == back64.shape == (2, 45, 38, 21)
    torch.testing.assert_close(x32.as_tensor().double(), x64.as_tensor().double(), atol=1e-5 * 1000, rtol=0)  # of the range
    torch.testing.assert_close(back32.as_tensor().double(), back64.as_tensor().double(), atol=1e-5, rtol=0)


def test_lesion_measurements_on_the_bounding_box_equal_the_whole_volume() -> None:
    """``summary.measure`` labels only the lesions' bounding box: the same lesions, in image coordinates."""
    from skimage.measure import label, regionprops

    from sum_monai.predict.summary import measure

    rng = np.random.default_rng(0)
    lab = np.zeros((60, 50, 30), np.uint8)
    lab[20:30, 12:20, 8:14] = 1
    lab[40:43, 30:34, 20:22] = 1
    lab[41, 45, 25] = 1
    fg = (rng.random(lab.shape) * 0.4 + 0.55 * (lab > 0)).astype(np.float32)
    m = measure(lab, np.stack([1 - fg, fg]), ["background", "lesion"], voxel_size=0.5)
    regions = sorted(regionprops(label(lab > 0, connectivity=3), intensity_image=fg), key=lambda r: -r.area)
    assert m["lesion_count"] == len(regions) == 3 and m["lesion_pixels"] == int((lab > 0).sum())
    for lesion, region in zip(m["lesions"], regions, strict=True):
        assert lesion["bbox"] == list(region.bbox) and lesion["pixels"] == region.area
        assert lesion["centroid"] == [round(float(c), 2) for c in region.centroid]
        assert lesion["prob_mean"] == pytest.approx(region.intensity_mean, abs=1e-4)
    assert m["lesion_volume_mm3"] == pytest.approx(0.5 * m["lesion_pixels"])
    assert m["class_pixels"] == {"background": int((lab == 0).sum()), "lesion": int((lab == 1).sum())}
    # the 2D bundles' argmax keeps float labels: measured the same
    assert measure(lab.astype(np.float32), np.stack([1 - fg, fg]), ["background", "lesion"], voxel_size=0.5) == m
