"""Grad-CAM overlays (``callbacks=gradcam``) after a real short training on official-format files.

A small ResNet trains on a tiny OCTMNIST-format file (4 separable grey patterns, 28 px) with
the TensorBoard logger; at the end of fit the callback writes one PNG per validation image.
The test opens them, checks their shape and content, and reads the TensorBoard event file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import train_in
from medmnist_files import write_medmnist
from medvision.callbacks.gradcam import default_target_layer, jet, overlay_image

N_IMAGES = 5


def test_gradcam_overlays_after_training(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_medmnist(home / "data" / "medmnist", "octmnist", n=24, seed=0)
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
            "data.val_batch_size=4",
            "trainer.max_epochs=3",
            "seed=0",
            "logger=tensorboard",
            "callbacks.progress_bar=null",
            "callbacks.model_summary=null",
            f"callbacks.gradcam.n_images={N_IMAGES}",
            "callbacks.gradcam.class_source=label",
        ],
    )
    pngs = sorted((run.output_dir / "gradcam").glob("*.png"))
    assert len(pngs) == N_IMAGES, pngs  # across two validation batches of 4
    names = {"normal", "choroidal neovascularization", "drusen", "diabetic macular edema"}
    for path in pngs:
        picture = np.asarray(Image.open(path))
        assert picture.ndim == 3 and picture.shape[2] in (3, 4), picture.shape
        height, width = picture.shape[:2]
        assert width == 2 * height and height >= 128, picture.shape  # [image | overlay], 28 px enlarged
        image, overlay = picture[:, : width // 2, :3].astype(int), picture[:, width // 2 :, :3].astype(int)
        assert image.std() > 5 and overlay.std() > 5, path  # not constant
        # grey input: equal channels on the left; the heat map colours the right half
        assert (image[..., 0] == image[..., 1]).all()
        assert np.abs(overlay[..., 0] - overlay[..., 2]).mean() > 5, path
        assert any(n.replace(" ", "-") in path.name for n in names), path.name

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.output_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()["images"]
    gradcam_tags = sorted(t for t in tags if t.startswith("gradcam/"))  # beside them: confusion/ROC pictures
    assert len(gradcam_tags) == N_IMAGES, tags
    encoded = events.Images(gradcam_tags[0])[-1]
    assert (encoded.height, encoded.width) == np.asarray(Image.open(pngs[0])).shape[:2]


def test_overlay_of_a_3d_volume_uses_the_middle_slice() -> None:
    volume = np.zeros((1, 16, 16, 9), dtype=np.float32)
    volume[0, 4:12, 4:12, 4] = 1.0  # only the middle slice (index 4) holds the square
    cam = np.zeros((16, 16, 9), dtype=np.float32)
    cam[:8, :, 4] = 1.0
    picture = overlay_image(volume, cam, min_side=16)
    assert picture.shape == (16, 32, 3)
    assert picture[8, 8].tolist() == [255, 255, 255] and picture[0, 0].tolist() == [0, 0, 0]
    # heat (top half of the map) is red-ish, cold is blue-ish on the overlay side
    assert picture[2, 16 + 2, 0] > picture[2, 16 + 2, 2] and picture[14, 16 + 2, 2] > picture[14, 16 + 2, 0]
    assert jet(np.array([0.0]))[0, 2] > 0.4 and jet(np.array([1.0]))[0, 0] > 0.4


@pytest.mark.parametrize(
    ("factory", "layer"),
    [
        ("resnet", "layer4"),
        ("densenet", "class_layers.relu"),
        ("efficientnet", "_swish"),
    ],
)
def test_default_target_layer_per_net(factory: str, layer: str) -> None:
    from monai.networks.nets import DenseNet121

    from medvision.models.nets.classifiers import efficientnet, resnet

    net = {
        "resnet": lambda: resnet(1, 3, depth=10),
        "densenet": lambda: DenseNet121(2, 1, 3),
        "efficientnet": lambda: efficientnet(1, 3),
    }[factory]()
    assert default_target_layer(net) == layer
    assert layer in dict(net.named_modules())
