"""Class probabilities in the preprocessed space -> each case's original grid, the one place.

The deterministic preprocessing (``data.transforms.load``: reorienting, resampling, cropping,
padding) puts every case on the network's grid. nnU-Net and the Medical Segmentation Decathlon
score a segmentation on each case's own grid instead, against its label file as it is stored.
This module undoes the spatial steps of the preprocessing on the class probabilities (MONAI
``Invertd``, linear interpolation, so that the arg-max is taken on the original grid):

- :func:`to_original_grid`: one preprocessed case -> its probabilities on the file's grid;
  ``medvision-predict`` writes its masks with it (:mod:`medvision.inference.predict`);
- :class:`OriginalSpace`: a preprocessed batch -> per case, the probabilities on the grid of its
  label file and that label file read as it is stored (``LoadImage`` + ``EnsureChannelFirst``:
  no reorienting, no resampling). :meth:`MedvisionDataModule.original_space
  <medvision.data.base.MedvisionDataModule.original_space>` makes one; ``medvision.train.build``
  hands it to the segmenter, which scores its test cases with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from medvision.utils.errors import MedvisionError

if TYPE_CHECKING:
    from monai.data import MetaTensor
    from monai.transforms import Compose


def original_grid(image: MetaTensor) -> tuple[tuple[int, ...], np.ndarray]:
    """Spatial shape and affine (voxel -> world, mm) of the file a preprocessed image was read from.

    Args:
        image: a preprocessed image (one case, channel first) whose metadata ``LoadImage`` filled.
    """
    meta = image.meta
    affine = np.asarray(meta.get("original_affine", meta["affine"]), dtype=np.float64)
    return tuple(int(s) for s in meta["spatial_shape"]), affine


def to_original_grid(
    probabilities: torch.Tensor, data: Mapping[str, Any], transform: Compose, key: str = "image"
) -> MetaTensor:
    """The probabilities of one preprocessed case, put back on the grid of the file it was read from.

    The spatial steps ``transform`` applied to ``data[key]`` are inverted on ``probabilities``
    (MONAI ``Invertd``, ``nearest_interp=False``: probabilities are interpolated, never labels).

    Args:
        probabilities: ``(C, *spatial)`` class probabilities in the preprocessed space (CPU).
        data: the preprocessed case; ``data[key]`` is the MetaTensor that records the operations.
        transform: the preprocessing that made ``data`` (the run's ``data.transforms.load``).
        key: the key of the preprocessed image.

    Returns:
        ``(C, *original)`` probabilities with the file's affine.

    Raises:
        RuntimeError: the inversion did not land on the file's grid (a step of the preprocessing
            that cannot be inverted).
    """
    from monai.data import MetaTensor
    from monai.transforms import Invertd

    image = data[key]
    sample = {key: image, "pred": MetaTensor(probabilities)}  # Invertd gives it the image's metadata and operations
    inverted = Invertd(keys="pred", transform=transform, orig_keys=key, nearest_interp=False)(sample)["pred"]
    shape, affine = original_grid(image)
    if tuple(inverted.shape[1:]) != shape or not np.allclose(np.asarray(inverted.affine), affine, atol=1e-3):
        raise RuntimeError(
            f"inverting the preprocessing of {image.meta.get('filename_or_obj', key)} gave shape "
            f"{tuple(inverted.shape[1:])} and affine {np.asarray(inverted.affine).tolist()}, not the input's "
            f"{shape} and {affine.tolist()}"
        )
    return inverted


class OriginalCase(NamedTuple):
    """One case on the grid of its label file."""

    #: ``(C, *label grid)`` class probabilities
    probabilities: torch.Tensor
    #: ``(1, *label grid)`` the label file's values
    label: torch.Tensor
    #: voxel size (mm) of the label file, one value per spatial axis
    spacing: list[float]


class OriginalSpace:
    """A preprocessed batch and its class probabilities -> each case on the grid of its label file.

    Called as ``original_space(batch, probabilities)``; a plain callable, so that a model can use
    it without knowing files or transforms.

    Args:
        transform: the deterministic preprocessing the batch went through (``data.transforms.load``).
        image_key: the key of the images in a batch.
        label_key: the key of the labels; their metadata name the label files.
    """

    def __init__(self, transform: Compose, image_key: str = "image", label_key: str = "label") -> None:
        from monai.transforms import Compose, EnsureChannelFirst, LoadImage

        self.transform = transform
        self.image_key = image_key
        self.label_key = label_key
        self.read_label = Compose([LoadImage(image_only=True), EnsureChannelFirst()])

    def __call__(self, batch: Mapping[str, Any], probabilities: torch.Tensor) -> list[OriginalCase]:
        """Every case of ``batch`` on its label file's grid.

        Args:
            batch: a collated batch of the preprocessed test split (``image``, ``label`` MetaTensors).
            probabilities: ``(B, C, *spatial)`` class probabilities of the batch's images.

        Raises:
            MedvisionError: a label file's grid differs from its image's (geometry the data audit
                reports).
        """
        from monai.data import decollate_batch

        cases = decollate_batch({self.image_key: batch[self.image_key], self.label_key: batch[self.label_key]})
        out = []
        for case, probs in zip(cases, probabilities.detach().float().cpu(), strict=True):
            inverted = to_original_grid(probs, case, self.transform, key=self.image_key)
            path = case[self.label_key].meta["filename_or_obj"]
            label = self.read_label(path)
            if tuple(label.shape[1:]) != tuple(inverted.shape[1:]):
                raise MedvisionError(
                    f"the label file {path} has the grid {tuple(label.shape[1:])}, its image "
                    f"{case[self.image_key].meta.get('filename_or_obj')} the grid {tuple(inverted.shape[1:])}",
                    fix="give each case an image and a label of the same geometry (medvision-data validate)",
                )
            spacing = [float(v) for v in torch.as_tensor(label.pixdim).flatten().tolist()][: label.ndim - 1]
            out.append(OriginalCase(inverted.as_tensor(), label.as_tensor(), spacing))
        return out
