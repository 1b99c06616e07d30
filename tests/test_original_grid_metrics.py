"""Test metrics are computed where the labels live: on each case's label file, on its own grid.

A tiny run is trained on synthetic data stored at 1 mm with a plan that reorients (LPS, the files
are RAS) and resamples (anisotropic ``data.transforms.pixdim``), so that the preprocessed space
and the files' grids differ. ``medvision-predict`` then writes the masks of the test split's
images in their files' space; the Dice of those masks against the label files, per class and
averaged over the cases as MONAI's ``DiceMetric(reduction="mean_batch")`` does, must equal the
run's ``test/dice_<label>`` and ``test/dice_mean``. The 2D run tests two cases per test batch
(the batch is decollated case by case).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import FinishedRun, compose_in, train_in

#: a tiny 3D U-Net on MONAI's synthetic spheres (6 cases of 32^3 at 1 mm: 2 test, 1 val, 3 train),
#: preprocessed to LPS at 1.6 x 1.3 x 2.0 mm
SEG3D = [
    "experiment=synthetic_seg3d",
    "data.source.num_cases=6",
    "data.source.size=32",
    "data.source.num_seg_classes=1",
    "data.test_fraction=0.34",
    "data.val_fraction=0.17",
    "data.patch_size=[16,16,16]",
    "data.transforms.pixdim=[1.6,1.3,2.0]",
    "data.transforms.axcodes=LPS",
    "data.transforms.num_samples=2",
    "model.net.channels=[8,16]",
    "model.net.strides=[2]",
    "model.net.num_res_units=1",
    "model.optimizer.lr=1e-2",
    "trainer.max_epochs=6",
    "trainer.check_val_every_n_epoch=6",
    "logger=[csv]",
    "seed=0",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]

#: a tiny 2D U-Net on synthetic discs (8 cases of 64^2: 2 test, 2 val, 4 train), two classes,
#: preprocessed to LA at 1.4 mm, two cases per test batch
SEG2D = [
    "experiment=synthetic_seg2d",
    "data.source.num_cases=8",
    "data.source.size=64",
    "data.patch_size=[32,32]",
    "data.transforms.pixdim=[1.4,1.4]",
    "data.transforms.axcodes=LA",
    "data.val_batch_size=2",
    "trainer.max_epochs=8",
    "trainer.check_val_every_n_epoch=8",
    "logger=[csv]",
    "seed=0",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]

#: a few epochs learn the objects well above chance (masks neither empty nor everything: an
#: all-foreground mask scores ~0.1). Observed test/dice_mean (2-core CPU, seeds 0 / 1 / 2):
#: 3D 0.698 / 0.455 / 0.438, 2D 0.429 / 0.479 / 0.515.
MIN_DICE = 0.3

#: the preprocessed-space Dice differs from the label files' by more than this, so the equality
#: with the masks' Dice tells the two apart (observed differences: 0.03-0.11)
MIN_SPACE_GAP = 1e-3


def dice_per_class(masks: list[np.ndarray], labels: list[np.ndarray], num_classes: int) -> list[float]:
    """Foreground Dice per class, averaged over the cases that hold the class (MONAI's ``mean_batch``:
    a case without the class in its label gives NaN and is left out of that class's mean)."""
    out = []
    for c in range(1, num_classes):
        scores = []
        for mask, label in zip(masks, labels, strict=True):
            p, t = mask == c, label == c
            if t.any():
                scores.append(2 * (p & t).sum() / (p.sum() + t.sum()))
        out.append(float(np.mean(scores)) if scores else float("nan"))
    return out


def _test_cases(run: FinishedRun) -> tuple[list[dict], list[str]]:
    """The test split's records with the shape of each preprocessed image, and the label names."""
    from hydra.utils import instantiate

    datamodule = instantiate(run.cfg.data)
    dataset = datamodule.deterministic_dataset("test")
    cases = [
        {**record, "preprocessed_shape": tuple(dataset[i]["image"].shape[1:])}
        for i, record in enumerate(datamodule.splits["test"])
    ]
    return cases, datamodule.label_names


def _predict(home: Path, run: FinishedRun, cases: list[dict], root: Path) -> dict[str, Path]:
    """``medvision-predict`` with the run's best checkpoint on the test images; the mask of each case."""
    from medvision.inference.predict import predict

    inputs = root / "inputs"
    inputs.mkdir(parents=True)
    for case in cases:
        (inputs / Path(case["image"]).name).symlink_to(case["image"])
    cfg = compose_in(
        home, root / "predict", [f"ckpt_path={run.best_ckpt}", f"input={inputs}", f"output={root / 'masks'}"], "predict"
    )
    summary = predict(cfg)
    assert summary.failed == {} and len(summary.written) == len(cases), summary
    return {case["id"]: Path(summary.written[Path(case["image"]).name.split(".nii")[0]][0]) for case in cases}


@pytest.mark.parametrize(("name", "overrides"), [("seg3d", SEG3D), ("seg2d", SEG2D)])
def test_test_dice_equals_predicted_masks_against_label_files(
    name: str, overrides: list[str], medvision_home: Path, tmp_path: Path
) -> None:
    run = train_in(medvision_home, tmp_path / name, overrides)
    saved = json.loads((run.output_dir / "metrics.json").read_text())
    cases, label_names = _test_cases(run)
    assert len(cases) == 2, cases

    masks_by_case = _predict(medvision_home, run, cases, tmp_path / f"{name}_predict")
    masks, labels = [], []
    for case in cases:
        label_file = nib.load(case["label"])
        mask_file = nib.load(masks_by_case[case["id"]])
        # the plan really changed the grid: the network saw another shape than the file's
        assert case["preprocessed_shape"] != label_file.shape, case
        assert mask_file.shape == label_file.shape and np.allclose(mask_file.affine, label_file.affine)
        masks.append(np.asarray(mask_file.dataobj))
        labels.append(np.asarray(label_file.dataobj))

    expected = dice_per_class(masks, labels, len(label_names))
    for class_name, value in zip(label_names[1:], expected, strict=True):
        assert saved[f"test/dice_{class_name}"] == pytest.approx(value, abs=1e-4), (class_name, saved, expected)
    assert saved["test/dice_mean"] == pytest.approx(float(np.nanmean(expected)), abs=1e-4), (saved, expected)
    assert saved["test/dice_mean"] > MIN_DICE, saved
    # HD95 on the label files' grid (mm) and the preprocessed-space Dice beside it
    assert np.isfinite(saved["test/hd95_mean"]) and saved["test/hd95_mean"] >= 0
    assert 0 < saved["test_preprocessed/dice_mean"] <= 1
    assert abs(saved["test_preprocessed/dice_mean"] - saved["test/dice_mean"]) > MIN_SPACE_GAP, saved
    assert not any(k.startswith("test_preprocessed/hd95") for k in saved)
    print(
        f"{name}: test/dice_mean (label files' grids) {saved['test/dice_mean']:.6f}, "
        f"from the predicted masks {np.nanmean(expected):.6f}, "
        f"test_preprocessed/dice_mean {saved['test_preprocessed/dice_mean']:.6f}"
    )
