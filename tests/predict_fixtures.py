"""Tiny trained checkpoints for the prediction and export tests, trained once per session, and
the test images they predict (spheres drawn in millimetres, a CT series of DICOM slices).

Both test modules ask for the same checkpoints; each is trained through the real
``medvision.train.run`` into ``<session home>/<name>`` the first time and reused after that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import train_in
from medmnist_files import write_medmnist

#: a tiny 3D U-Net on MONAI's synthetic spheres (one foreground class, 32^3 volumes, 1 mm):
#: sphere-vs-background is learnt in 10 short epochs
SEG3D = [
    "experiment=synthetic_seg3d",
    "data.source.num_cases=6",
    "data.source.size=32",
    "data.source.num_seg_classes=1",
    "data.patch_size=[32,32,32]",
    "data.transforms.num_samples=2",
    "model.net.channels=[8,16]",
    "model.net.strides=[2]",
    "model.net.num_res_units=1",
    "model.optimizer.lr=1e-2",
    "trainer.max_epochs=10",
    "trainer.check_val_every_n_epoch=10",
    "test=false",
    "logger=[]",
    "seed=0",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]

#: a MedMNIST-format classifier (OCTMNIST's format: 4 classes, grey 28 px, repeated to RGB),
#: a small ResNet trained a few batches: for export and the CSV path, not for accuracy
CLASSIFIER = [
    "experiment=medmnist/resnet18_28",
    "data.flag=octmnist",
    "model.net.depth=10",
    "data.batch_size=8",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "test=false",
    "logger=[]",
    "seed=0",
    "callbacks.gradcam=null",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
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


# ----------------------------------------------------------------------------- test images
def spheres(
    points_mm: np.ndarray, rng: np.random.Generator, extent_mm: np.ndarray, n: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    """Image (0..1: spheres 0.5-1.0 over uniform noise < 0.3, as the training data) and label at ``points_mm``."""
    shape = points_mm.shape[:-1]
    image, label = np.zeros(shape), np.zeros(shape, np.uint8)
    for _ in range(n):
        radius = rng.uniform(4.0, 6.0)
        centre = rng.uniform(radius + 1, extent_mm - radius - 1)
        inside = ((points_mm - centre) ** 2).sum(-1) <= radius**2
        image[inside], label[inside] = rng.uniform(0.5, 1.0), 1
    image = np.maximum(image, rng.uniform(0, 0.3, shape))
    return (image - image.min()) / (image.max() - image.min()), label


ROW_DIR, COL_DIR = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])  # coronal slices (LPS)
PIXEL_SPACING = (0.9, 1.1)  # (between rows, between columns) mm
SLICE_STEP = 2.0
ROWS, COLS, SLICES = 30, 28, 16
FIRST_IPP = np.array([-15.0, -40.0, 25.0])


def write_ct_series(folder: Path, seed: int = 2) -> np.ndarray:
    """A coronal CT series (int16 + rescale to HU), files named in shuffled order.

    Returns:
        The reference label on MONAI's voxel grid of the series (column, row, slice).
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    normal = np.cross(ROW_DIR, COL_DIR)
    i, j, k = np.meshgrid(np.arange(COLS), np.arange(ROWS), np.arange(SLICES), indexing="ij")
    # patient (LPS) position of every voxel; spheres are drawn in the frame of the slices
    local = np.stack([i * PIXEL_SPACING[1], j * PIXEL_SPACING[0], k * SLICE_STEP], -1)
    rng = np.random.default_rng(seed)
    extent = np.array([COLS * PIXEL_SPACING[1], ROWS * PIXEL_SPACING[0], SLICES * SLICE_STEP])
    image, label = spheres(local, rng, extent, n=4)
    stored = np.round(image * 1000).astype(np.int16)  # HU = stored - 1024
    folder.mkdir(parents=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    for n, s in enumerate(rng.permutation(SLICES)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.InstanceNumber = "CT", "phantom", int(s) + 1
        ds.ImagePositionPatient = [float(v) for v in FIRST_IPP + s * SLICE_STEP * normal]
        ds.ImageOrientationPatient = [float(v) for v in (*ROW_DIR, *COL_DIR)]
        ds.PixelSpacing = [PIXEL_SPACING[0], PIXEL_SPACING[1]]
        ds.SliceThickness = SLICE_STEP
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.ascontiguousarray(stored[:, :, s].T).tobytes()  # (rows, columns) in the file
        ds.save_as(folder / f"IM{n:04d}.dcm", enforce_file_format=True)
    assert len(pydicom.dcmread(folder / "IM0000.dcm").PixelData) == ROWS * COLS * 2
    return label
