"""Pictures of a run: segmentation overlays, confusion matrices and ROC curves (issue #8, point 4).

Two real short trainings (a 2D U-Net on MONAI's synthetic discs, a ResNet-10 on a tiny
OCTMNIST-format file) with the TensorBoard (and, for the segmenter, W&B) logger: the PNGs must
exist in ``<run dir>/images/``, be non-constant RGB pictures with the label / prediction colours,
and reach the TensorBoard event file and the offline W&B run. Smaller tests check the 3D layout,
the ROC areas (equal to the logged ``auc_<label>``) and that a picture grows with ``min_side``.

The pictures are checked by what they show, not by where their pixels sit: the columns are
``image | label | prediction`` (so a third of the width holds each panel), a label value is its
palette colour blended over the grey image, and nothing else is coloured that way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHORT_RUN, train_in
from medmnist_files import write_medmnist
from medvision.callbacks.classification_plots import confusion_picture, roc_curves
from medvision.callbacks.overlays import class_colour, mid_slices, overlay_picture
from medvision.metrics.classification import ClassificationMetrics

#: weight of the label colours in the overlays (``callbacks.overlays.alpha`` and ``overlay_picture``'s default)
ALPHA = 0.5


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


def _coloured(panel: np.ndarray, value: int) -> np.ndarray:
    """Pixels showing label ``value``: its colour blended over grey (the grey part is equal in R, G, B)."""
    colour = class_colour(value).astype(int)
    hue = panel - panel.min(axis=-1, keepdims=True)
    # a blend (1 - a) * grey + a * colour keeps the colour's channel differences, scaled by a
    return (np.abs(hue - ALPHA * (colour - colour.min())) <= 3).all(axis=-1) & (hue.max(axis=-1) > 20)


def _columns(picture: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image, label and prediction columns of an overlay (a third of its width each)."""
    image, label, prediction = np.array_split(np.asarray(picture).astype(int), 3, axis=1)
    return image, label, prediction


def _bands(mask: np.ndarray) -> int:
    """How many separate runs of picture rows hold a pixel of ``mask``."""
    rows = mask.any(axis=1).astype(int)
    return int(np.count_nonzero(np.diff(np.concatenate([[0], rows])) == 1))


def _wandb_media(run_dir: Path, stage: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The grey images and the masks of ``stage`` that the run's offline W&B run holds."""
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    media = offline / "files" / "media" / "images"
    images = [np.asarray(Image.open(p)) for p in sorted((media / "overlay").glob(f"{stage}_*.png"))]
    masks = [np.asarray(Image.open(p)) for p in sorted((media / "mask" / "overlay").glob(f"{stage}_*.mask.png"))]
    return images, masks


def test_segmentation_overlays_after_a_short_run(tmp_path: Path, medvision_home: Path) -> None:
    run = train_in(
        medvision_home,
        tmp_path / "run",
        [
            *SHORT_RUN,
            "logger=many",
            "callbacks.progress_bar=null",
            "callbacks.model_summary=null",
            "callbacks.overlays.every_n_epochs=2",
        ],
    )
    folder = run.output_dir / "images"
    names = sorted(p.name for p in folder.glob("*.png"))
    # 3 epochs, every 2: the validation of epoch 2 (0-based 1) and of the last epoch; the test
    assert [n.split("_case")[0] for n in names] == [
        "overlay_test_00",
        "overlay_val_epoch0001_00",
        "overlay_val_epoch0002_00",
    ], names
    assert not list(folder.glob("confusion_*")), "a segmenter draws no confusion matrix"
    min_side = run.cfg.callbacks.overlays.min_side
    for name in names:
        picture = _rgb(folder / name)
        assert picture.shape[1] >= 3 * min_side and picture.shape[0] >= min_side, (name, picture.shape)
        image, label, prediction = _columns(picture)
        # the image column is the grey image (the legend's swatches are plain colours, not blends)
        assert not any(_coloured(image, v).any() for v in (1, 2)), name
        grey = (image[..., 0] == image[..., 1]) & (image[..., 1] == image[..., 2])
        assert image[grey].std() > 10, name
        for value in (1, 2):  # both disc classes are in the label, in their colours
            assert _coloured(label, value).mean() > 0.005, (name, value)
        # the prediction column is coloured where the network predicts a disc (it does, after 3 epochs)
        assert sum(_coloured(prediction, v).mean() for v in (1, 2)) > 0.005, name
    tags = _tensorboard_images(run.output_dir)
    assert {"overlay/val/00", "overlay/test/00"} <= set(tags), tags
    assert tags["overlay/test/00"] == _rgb(folder / names[0]).shape[:2]

    # W&B holds the test case as its grey image with the label and the prediction as masks: the
    # masks are the pictures' label and prediction, so each class's pixels in a PNG column are
    # the mask's pixels of that class times one enlargement factor
    images, masks = _wandb_media(run.output_dir, "test")
    assert len(images) == 1 and len(masks) == 2, (len(images), len(masks))
    assert all(m.shape == images[0].shape for m in masks) and images[0].ndim == 2
    assert all(set(np.unique(m)) <= {0, 1, 2} for m in masks)
    _, label, prediction = _columns(_rgb(folder / names[0]))
    shown = [[int(_coloured(column, v).sum()) for v in (1, 2)] for column in (label, prediction)]
    in_masks = [[int((m == v).sum()) for v in (1, 2)] for m in masks]
    assert _one_enlargement(shown, in_masks) or _one_enlargement(shown, in_masks[::-1]), (shown, in_masks)


def _one_enlargement(shown: list[list[int]], masks: list[list[int]]) -> bool:
    """Whether every class count drawn is its mask count times one square factor (the enlargement)."""
    ratios = set()
    for column, mask in zip(shown, masks, strict=True):
        for drawn, count in zip(column, mask, strict=True):
            if (drawn == 0) != (count == 0):
                return False
            if count:
                ratios.add(drawn / count)
    if len(ratios) != 1:
        return False
    (ratio,) = ratios
    return ratio >= 1 and round(ratio**0.5) ** 2 == ratio


def test_overlay_columns_show_image_label_and_prediction() -> None:
    """A 2D case: the label's class in the middle column only, the prediction's in the right one."""
    rng = np.random.default_rng(0)
    rows = np.linspace(-2.0, 2.0, 40)[:, None]  # a vertical ramp: every column of the image is the same
    image = (rows + 0.1 * rng.normal(0, 1, (40, 40)))[None].astype(np.float32)
    label = np.zeros((40, 40), dtype=np.int64)
    label[5:15, 5:15] = 1
    prediction = np.zeros((40, 40), dtype=np.int64)
    prediction[20:30, 20:30] = 2
    picture = overlay_picture(image, label, prediction, ["background", "a", "b"])
    left, middle, right = _columns(picture)
    assert not _coloured(left, 1).any() and not _coloured(left, 2).any()
    assert _coloured(middle, 1).any() and not _coloured(middle, 2).any()
    assert _coloured(right, 2).any() and not _coloured(right, 1).any()
    # the grey under the colours is the same image in every column: the ramp, brighter downwards
    for column in (left, middle, right):
        grey = (column[..., 0] == column[..., 1]) & (column[..., 1] == column[..., 2]) & (column[..., 0] != 32)
        profile = [np.median(column[r][grey[r], 0]) for r in range(len(column)) if grey[r].mean() > 0.5]
        assert len(profile) > 40 and np.corrcoef(np.arange(len(profile)), profile)[0, 1] > 0.9


def test_overlay_grows_with_min_side() -> None:
    image = np.random.default_rng(2).normal(0, 1, (1, 30, 20)).astype(np.float32)
    label = np.zeros((30, 20), dtype=np.int64)
    label[10:20, 5:15] = 1
    small, large = (overlay_picture(image, label, label, ["background", "a"], min_side=s) for s in (64, 256))
    assert large.shape[0] > small.shape[0] and large.shape[1] > small.shape[1]
    for picture, side in ((small, 64), (large, 256)):  # a tall image: its height reaches min_side
        assert picture.shape[0] >= side and picture.shape[1] >= 3 * side * 20 // 30, (side, picture.shape)
    # the label is enlarged with the image: more pixels of its colour, in the same share of the column
    a, b = (_coloured(_columns(p)[1], 1) for p in (small, large))
    assert b.sum() > 4 * a.sum() > 0


def test_overlay_of_a_volume_shows_the_three_mid_planes() -> None:
    volume = np.zeros((20, 24, 16), dtype=np.float32)
    volume[:, :, -1] = 1.0  # the top (superior) slice of a RAS array
    planes = dict(mid_slices(volume))
    assert list(planes) == ["sagittal", "coronal", "axial"]
    assert (
        planes["sagittal"].shape == (16, 24)
        and planes["coronal"].shape == (16, 20)
        and planes["axial"].shape == (24, 20)
    )
    assert planes["sagittal"][0].min() == 1.0 and planes["sagittal"][1:].max() == 0.0  # superior is up

    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (1, 20, 24, 16)).astype(np.float32)
    label = np.zeros((20, 24, 16), dtype=np.int64)
    label[6:14, 8:16, 4:12] = 1  # crosses the middle slice of every axis
    prediction = np.roll(label, 3, axis=0) * 2  # another place, another class
    picture = overlay_picture(image, label, prediction, ["background", "a", "b"], min_side=96)
    left, middle, right = _columns(picture)
    assert not _coloured(left, 1).any() and not _coloured(left, 2).any()
    # one row per plane: the label's class shows three times down the label column, the
    # prediction's three times down the prediction column, each in its own column only
    assert _bands(_coloured(middle, 1)) == 3 and not _coloured(middle, 2).any()
    assert _bands(_coloured(right, 2)) == 3 and not _coloured(right, 1).any()


def test_classification_pictures_after_a_short_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_medmnist(home / "data" / "medmnist", "octmnist", n=16, seed=0)
    run = train_in(
        home,
        tmp_path / "run",
        [
            "experiment=medmnist/resnet18_28",
            "data.flag=octmnist",
            "data.as_rgb=false",
            "model.net.depth=10",
            "model.net.conv1_t_stride=2",
            "data.batch_size=8",
            "data.val_batch_size=8",
            "trainer.max_epochs=2",
            "seed=0",
            "logger=tensorboard",
            "callbacks.gradcam=null",
            "callbacks.progress_bar=null",
            "callbacks.model_summary=null",
            "callbacks.classification_plots.every_n_epochs=1",
        ],
    )
    folder = run.output_dir / "images"
    names = sorted(p.name for p in folder.glob("*.png"))
    assert names == [
        "confusion_test.png",
        "confusion_val_epoch0000.png",
        "confusion_val_epoch0001.png",
        "roc_test.png",
        "roc_val_epoch0000.png",
        "roc_val_epoch0001.png",
    ], names
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
