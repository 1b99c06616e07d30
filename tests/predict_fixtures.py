"""Tiny trained checkpoints for the prediction and export tests, trained once per session.

Both test modules ask for the same checkpoints; each is trained through the real
``medvision.train.run`` into ``<session home>/<name>`` the first time and reused after that.
"""

from __future__ import annotations

from pathlib import Path

from conftest import train_in
from medmnist_files import write_medmnist

#: a tiny 3D U-Net on MONAI's synthetic spheres (one foreground class, 32^3 volumes, 1 mm):
#: sphere-vs-background is learnt in 10 short epochs
SEG3D = [
    "experiment=synthetic_seg3d", "data.source.num_cases=6", "data.source.size=32", "data.source.num_seg_classes=1",
    "data.patch_size=[32,32,32]", "data.transforms.num_samples=2",
    "model.net.channels=[8,16]", "model.net.strides=[2]", "model.net.num_res_units=1", "model.optimizer.lr=1e-2",
    "trainer.max_epochs=10", "trainer.check_val_every_n_epoch=10", "test=false", "logger=[]", "seed=0",
    "callbacks.progress_bar=null", "callbacks.model_summary=null",
]

#: a MedMNIST-format classifier (OCTMNIST's format: 4 classes, grey 28 px, repeated to RGB),
#: a small ResNet trained a few batches: for export and the CSV path, not for accuracy
CLASSIFIER = [
    "experiment=medmnist/resnet18_28", "data.flag=octmnist", "model.net.depth=10", "data.batch_size=8",
    "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "test=false",
    "logger=[]", "seed=0", "callbacks.gradcam=null", "callbacks.progress_bar=null", "callbacks.model_summary=null",
]


def _trained(home: Path, name: str, overrides: list[str]) -> Path:
    ckpt = home / name / "checkpoints" / "best.ckpt"
    if not ckpt.is_file():
        train_in(home, home / name, overrides)
    assert ckpt.is_file(), f"the tiny {name} run wrote no best checkpoint"
    return ckpt


def segmenter_checkpoint(home: Path) -> Path:
    """best.ckpt of the tiny 3D sphere segmenter (trained on first use)."""
    return _trained(home, "predict_seg3d", SEG3D)


def classifier_checkpoint(home: Path) -> Path:
    """best.ckpt of the tiny MedMNIST-format classifier (trained on first use)."""
    write_medmnist(home / "data" / "medmnist", "octmnist", n=16, seed=0)
    return _trained(home, "predict_classifier", CLASSIFIER)
