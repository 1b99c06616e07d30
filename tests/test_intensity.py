"""CT normalisation (``medvision.data.intensity.ClipZScored``): the planner's CT step.

It must give what MONAI's ``ScaleIntensityRanged`` gives for the same clip-then-z-score (the step
it replaced), keep the image's metadata, and leave its input unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRanged

from medvision.data.intensity import ClipZScore, ClipZScored


@pytest.mark.parametrize("dtype", [torch.float32, torch.int16, torch.float64])
def test_same_as_monai_scale_intensity_range_and_input_kept(dtype: torch.dtype) -> None:
    low, high, mean, std = -160.0, 240.0, 45.0, 61.0
    hu = torch.from_numpy(np.random.default_rng(0).integers(-1024, 2000, (1, 40, 30, 20))).to(dtype)
    image = MetaTensor(hu, affine=torch.diag(torch.tensor([0.8, 0.8, 1.5, 1.0], dtype=torch.float64)))
    before = image.clone()

    ours = ClipZScored(keys="image", low=low, high=high, mean=mean, std=std)({"image": image})["image"]
    monai = ScaleIntensityRanged(
        keys="image", a_min=low, a_max=high, b_min=(low - mean) / std, b_max=(high - mean) / std, clip=True
    )({"image": image.clone()})["image"]

    assert ours.dtype == torch.float32 and isinstance(ours, MetaTensor)
    torch.testing.assert_close(ours.as_tensor(), monai.as_tensor().float(), atol=1e-5, rtol=1e-5)
    assert torch.equal(ours.affine, image.affine)
    assert torch.equal(image.as_tensor(), before.as_tensor())  # the input is not changed
    assert float(ours.min()) == pytest.approx((low - mean) / std) and float(ours.max()) == pytest.approx(
        (high - mean) / std
    )


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="low <= high"):
        ClipZScore(low=10, high=0, mean=0, std=1)
    with pytest.raises(ValueError, match="std > 0"):
        ClipZScore(low=0, high=10, mean=0, std=0)
