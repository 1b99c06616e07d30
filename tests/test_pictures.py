"""Pictures of a run: segmentation overlays, confusion matrices and ROC curves (issue #8, point 4).

Two real short trainings (a 2D U-Net on MONAI's synthetic discs, a ResNet-10 on a tiny
OCTMNIST-format file) with the TensorBoard logger: the PNGs must exist in ``<run dir>/images/``,
be non-constant RGB pictures with the label / prediction colours, and reach the TensorBoard
event file. Smaller tests pin the 3D layout, the ROC areas (equal to the logged
``auc_<label>``) and the W&B mask format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHORT_RUN, train_in
from medmnist_files import write_medmnist
from PIL import Image

from medvision.callbacks.classification_plots import confusion_picture, roc_curves
from medvision.callbacks.overlays import _BAR, _GAP, class_colour, mid_slices, overlay_picture
from medvision.metrics.classification import ClassificationMetrics


def _tensorboard_images(run_dir: Path) -> dict[str, tuple[int, int]]:
    """``tag -> (height, width)`` of the last image of each tag in the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return {tag: (events.Images(tag)[-1].height, events.Images(tag)[-1].width) for tag in events.Tags()["images"]}


def _rgb(path: Path) -> np.ndarray:
    picture = Image.open(path)
    assert picture.mode == "RGB", (path, picture.mode)
    return np.asarray(picture).astype(int)


def _coloured(panel: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Pixels whose hue is the label colour's (blended over grey: the grey part is equal in R, G, B)."""
    hue = panel - panel.min(axis=-1, keepdims=True)
    target = colour.astype(int) - int(colour.min())
    # a blend (1 - a) * grey + a * colour keeps the colour's channel differences, scaled by a
    return (np.abs(hue - 0.5 * target) <= 3).all(axis=-1) & (hue.max(axis=-1) > 20)


def test_segmentation_overlays_after_a_short_run(tmp_path: Path, medvision_home: Path) -> None:
    run = train_in(medvision_home, tmp_path / "run", [
        *SHORT_RUN, "logger=tensorboard", "callbacks.progress_bar=null", "callbacks.model_summary=null",
        "callbacks.overlays.every_n_epochs=2",
    ])
    folder = run.output_dir / "images"
    names = sorted(p.name for p in folder.glob("*.png"))
    # 3 epochs, every 2: the validation of epoch 2 (0-based 1) and of the last epoch; the test
    assert [n.split("_case")[0] for n in names] == [
        "overlay_test_00", "overlay_val_epoch0001_00", "overlay_val_epoch0002_00"], names
    assert not list(folder.glob("confusion_*")), "a segmenter draws no confusion matrix"
    size = 64 * 2  # 64-pixel images enlarged to min_side 128
    for name in names:
        picture = _rgb(folder / name)
        assert picture.shape == (_BAR + size + _GAP + _BAR, 3 * size + 2 * _GAP, 3), picture.shape
        assert picture.std() > 10, name
        row = picture[_BAR:_BAR + size]
        image, label, prediction = (row[:, c * (size + _GAP):c * (size + _GAP) + size] for c in range(3))
        assert image.std() > 10 and (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
        for value in (1, 2):  # both disc classes are in the label, in their colours
            assert _coloured(label, class_colour(value)).mean() > 0.005, (name, value)
        # the prediction panel is coloured where the network predicts a disc (it does, after 3 epochs)
        assert sum(_coloured(prediction, class_colour(v)).mean() for v in (1, 2)) > 0.005, name
        # outside the coloured pixels, the three panels show the same grey image
        grey = (label == image).all(axis=-1)
        assert grey.mean() > 0.5
    tags = _tensorboard_images(run.output_dir)
    assert {"overlay/val/00", "overlay/test/00"} <= set(tags), tags
    assert tags["overlay/test/00"] == _rgb(folder / names[0]).shape[:2]


def test_overlay_of_a_volume_shows_the_three_mid_planes() -> None:
    volume = np.zeros((20, 24, 16), dtype=np.float32)
    volume[:, :, -1] = 1.0  # the top (superior) slice of a RAS array
    planes = dict(mid_slices(volume))
    assert list(planes) == ["sagittal", "coronal", "axial"]
    assert planes["sagittal"].shape == (16, 24) and planes["coronal"].shape == (16, 20) and planes["axial"].shape == (24, 20)
    assert planes["sagittal"][0].min() == 1.0 and planes["sagittal"][1:].max() == 0.0  # superior is up

    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (1, 20, 24, 16)).astype(np.float32)
    label = np.zeros((20, 24, 16), dtype=np.int64)
    label[6:14, 8:16, 4:12] = 1
    prediction = np.roll(label, 3, axis=0) * 2  # another place, another class
    picture = overlay_picture(image, label, prediction, ["background", "a", "b"], min_side=96)
    scale = -(-96 // 24)
    height, width = 24 * scale, 24 * scale  # the largest panel side among the three planes
    assert picture.shape == (_BAR + 3 * (height + _GAP) + _BAR, 3 * width + 2 * _GAP, 3)
    for r in range(3):
        row = picture[_BAR + r * (height + _GAP):_BAR + r * (height + _GAP) + height].astype(int)
        label_panel = row[:, width + _GAP:2 * width + _GAP]
        prediction_panel = row[:, 2 * (width + _GAP):]
        assert _coloured(label_panel, class_colour(1)).any() and not _coloured(label_panel, class_colour(2)).any()
        assert _coloured(prediction_panel, class_colour(2)).any() and not _coloured(prediction_panel, class_colour(1)).any()


def test_wandb_accepts_the_overlay_masks() -> None:
    import wandb

    from medvision.callbacks.overlays import _wandb_slices

    image = np.random.default_rng(1).normal(0, 1, (1, 12, 10, 8)).astype(np.float32)
    label = np.zeros((12, 10, 8), dtype=np.int64)
    label[3:9, 2:8, 2:6] = 1
    slices = _wandb_slices(image, label, label * 2, ["background", "a", "b"])
    assert len(slices) == 3
    for grey, masks in slices:
        assert set(masks) == {"label", "prediction"}
        assert masks["label"]["mask_data"].shape == grey.shape
        wandb.Image(grey, masks=masks)  # raises on a mask that does not fit the image


def test_classification_pictures_after_a_short_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_medmnist(home / "data" / "medmnist", "octmnist", n=16, seed=0)
    run = train_in(home, tmp_path / "run", [
        "experiment=medmnist/resnet18_28", "data.flag=octmnist", "data.as_rgb=false",
        "model.net.depth=10", "model.net.conv1_t_stride=2", "data.batch_size=8", "data.val_batch_size=8",
        "trainer.max_epochs=2", "seed=0", "logger=tensorboard", "callbacks.gradcam=null",
        "callbacks.progress_bar=null", "callbacks.model_summary=null",
        "callbacks.classification_plots.every_n_epochs=1",
    ])
    folder = run.output_dir / "images"
    names = sorted(p.name for p in folder.glob("*.png"))
    assert names == ["confusion_test.png", "confusion_val_epoch0000.png", "confusion_val_epoch0001.png",
                     "roc_test.png", "roc_val_epoch0000.png", "roc_val_epoch0001.png"], names
    for name in names:
        picture = _rgb(folder / name)
        assert min(picture.shape[:2]) >= 300 and picture.std() > 10, (name, picture.shape)
        # not only grey: the matrix's blue cells, the curves' colours
        assert (np.abs(picture[..., 2] - picture[..., 0]) > 60).mean() > 0.002, name
    tags = _tensorboard_images(run.output_dir)
    assert {"confusion/val/00", "confusion/test/00", "roc/val/00", "roc/test/00"} <= set(tags), tags
    assert tags["confusion/test/00"] == _rgb(folder / "confusion_test.png").shape[:2]


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_roc_areas_are_the_logged_per_class_auc(task: str) -> None:
    names = {"binary": ["no", "yes"], "multiclass": ["a", "b", "c"], "multilabel": ["x", "y", "z", "w"]}[task]
    metrics = ClassificationMetrics(task, names)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):  # three batches, as in an epoch
        logits = torch.randn(20, len(names), generator=generator)
        if task == "multilabel":
            target = (torch.rand(20, len(names), generator=generator) < 0.5).long()
        else:
            target = torch.randint(0, len(names), (20,), generator=generator)
            logits[torch.arange(20), target] += 1.0  # better than chance, not perfect
        metrics.update(logits, target)
    curves = roc_curves(metrics)
    logged = metrics.compute("val")
    shown = names[-1:] if task == "binary" else names
    assert [c[0] for c in curves] == shown
    for name, fpr, tpr, auc in curves:
        assert auc == pytest.approx(logged[f"val/auc_{name}"], abs=1e-6)
        assert fpr[0] == 0 and tpr[-1] == 1 and (np.diff(fpr) >= 0).all()
    if task == "binary":
        assert curves[0][3] == pytest.approx(logged["val/auc"], abs=1e-6)


def test_multilabel_confusion_draws_one_matrix_per_label() -> None:
    matrices = np.array([[[5, 1], [2, 4]], [[6, 0], [0, 6]], [[3, 3], [3, 3]]])
    one = confusion_picture(matrices, ["x", "y", "z"], "val: confusion matrix")
    other = confusion_picture(matrices[:, ::-1], ["x", "y", "z"], "val: confusion matrix")
    assert one.ndim == 3 and one.shape[2] == 3 and one.std() > 10
    assert one.shape == other.shape and (one != other).any()  # the counts are drawn
