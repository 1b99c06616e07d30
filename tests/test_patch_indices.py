"""The sampled patch-centre voxels (``medvision.data.patch_indices.SampledFgBgIndicesd``).

The 3D pipelines (``conf/data/transforms/seg3d.yaml``) find, once per case, where training patches
may be centred, and MONAI's ``RandCropByPosNegLabeld`` reads them. What must hold: the indices
point at foreground and background voxels only, they are a fixed-size, reproducible sample that
covers the sets, and the patches cut from them are centred where the sampler asked.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import RandCropByPosNegLabeld

from medvision.data.patch_indices import SampledFgBgIndicesd


def _label(shape=(1, 60, 50, 40), box=(slice(10, 30), slice(5, 25), slice(8, 20))) -> torch.Tensor:
    label = torch.zeros(shape)
    label[(0, *box)] = 1.0
    label[0, 40:45, 30:35, 25:30] = 2.0
    return label


@pytest.mark.parametrize("max_indices", [500, 10_000])
def test_indices_point_at_their_set_and_are_reproducible(max_indices: int) -> None:
    label = _label()
    step = SampledFgBgIndicesd(keys="label", max_indices=max_indices)

    out = step({"label": label})
    again = step({"label": label.clone()})

    flat = label[0].numpy().reshape(-1)
    fg, bg = out["label_fg_indices"], out["label_bg_indices"]
    assert fg.dtype == bg.dtype == np.int64
    assert len(fg) == len(bg) == max_indices  # fixed size: whole-case batches collate
    assert (flat[fg] > 0).all() and (flat[bg] == 0).all()
    assert np.array_equal(fg, again["label_fg_indices"]) and np.array_equal(bg, again["label_bg_indices"])
    foreground = int((flat > 0).sum())  # 20*20*12 + 5*5*5 = 4925 voxels
    if max_indices > foreground:  # a small set is kept whole (repeated to the size)
        assert set(fg.tolist()) == set(np.flatnonzero(flat > 0).tolist())
    else:  # a sample spreads over both structures, about in proportion
        in_small = np.isin(fg, np.flatnonzero(flat == 2)).mean()
        assert 0.0 < in_small < 0.1
    # the large background set is drawn without listing it: still spread over the volume
    z = np.unravel_index(bg, label.shape[1:])[2]
    assert z.min() < 5 and z.max() > 35


def test_no_foreground_gives_an_empty_set_and_a_missing_label_is_skipped() -> None:
    step = SampledFgBgIndicesd(keys="label", max_indices=100)
    out = step({"label": torch.zeros(1, 20, 20, 20)})
    assert len(out["label_fg_indices"]) == 0 and len(out["label_bg_indices"]) == 100
    assert step({"image": torch.zeros(1, 4, 4, 4)}).keys() == {"image"}  # prediction: no label
    with pytest.raises(ValueError, match="max_indices"):
        SampledFgBgIndicesd(keys="label", max_indices=0)


def test_patches_cut_from_the_sample_are_centred_on_foreground() -> None:
    """With pos=1, neg=0 every patch centre is a foreground voxel; the index keys do not reach the patches."""
    label = _label()
    image = torch.arange(label.numel(), dtype=torch.float32).reshape(label.shape)
    data = SampledFgBgIndicesd(keys="label", max_indices=2000)({"image": image, "label": label})
    crop = RandCropByPosNegLabeld(
        keys=["image", "label"],
        label_key="label",
        spatial_size=(9, 9, 9),
        pos=1,
        neg=0,
        num_samples=20,
        fg_indices_key="label_fg_indices",
        bg_indices_key="label_bg_indices",
    )
    crop.set_random_state(0)
    patches = crop(data)
    assert len(patches) == 20
    for patch in patches:
        assert "label_fg_indices" not in patch and "label_bg_indices" not in patch
        assert patch["label"][0, 4, 4, 4] > 0  # the centre voxel is foreground
        # image and label were cut at the same place: the centre voxel's linear index is a foreground one
        centre = int(patch["image"][0, 4, 4, 4])
        assert label.reshape(-1)[centre] > 0
