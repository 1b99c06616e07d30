"""Synthetic segmentation data from MONAI's test-image generators, written as NIfTI files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from medvision.data.sources import write_msd_manifest


class SyntheticSegmentation:
    """Random spheres (3D) or discs (2D) in noise, from ``monai.data.create_test_image_{2,3}d``.

    Object labels follow MONAI's generator: each object gets a random intensity and its label
    is that intensity binned into ``num_seg_classes`` classes, so the task is to find objects
    and tell dim from bright ones.

    Args:
        spatial_dims: 2 or 3.
        num_cases: number of cases (each its own subject).
        size: edge length of each image in voxels.
        num_objs: objects per image.
        num_seg_classes: foreground classes.
        noise_max: amplitude of the uniform noise.
        spacing: voxel size in mm written into the NIfTI affine.
        seed: seed of the generator.
    """

    def __init__(
        self,
        spatial_dims: Literal[2, 3] = 3,
        num_cases: int = 16,
        size: int = 64,
        num_objs: int = 8,
        num_seg_classes: int = 2,
        noise_max: float = 0.3,
        spacing: float = 1.0,
        seed: int = 0,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims
        self.num_cases = num_cases
        self.size = size
        self.num_objs = num_objs
        self.num_seg_classes = num_seg_classes
        self.noise_max = noise_max
        self.spacing = spacing
        self.seed = seed
        self.name = f"synthetic_seg{spatial_dims}d"

    def params(self) -> dict[str, Any]:
        """The parameters that determine the written files."""
        return {k: v for k, v in vars(self).items() if k != "name"}

    def label_names(self) -> list[str]:
        """``background`` then one name per intensity class of objects."""
        shape = "sphere" if self.spatial_dims == 3 else "disc"
        return ["background"] + [f"{shape}_{k}" for k in range(1, self.num_seg_classes + 1)]

    def write(self, folder: Path) -> None:
        """Write ``num_cases`` image/label pairs and ``dataset.json`` into ``folder``."""
        import nibabel as nib
        from monai.data import create_test_image_2d, create_test_image_3d

        (folder / "imagesTr").mkdir()
        (folder / "labelsTr").mkdir()
        rng = np.random.RandomState(self.seed)
        affine = np.diag([self.spacing] * 3 + [1.0])
        cases = []
        radius = max(3, self.size // 8)
        for i in range(self.num_cases):
            common = dict(
                num_objs=self.num_objs,
                rad_max=radius,
                rad_min=max(2, radius // 2),
                noise_max=self.noise_max,
                num_seg_classes=self.num_seg_classes,
                random_state=rng,
            )
            if self.spatial_dims == 3:
                image, label = create_test_image_3d(self.size, self.size, self.size, **common)
            else:
                image, label = create_test_image_2d(self.size, self.size, **common)
            case = f"case_{i:03d}"
            nib.save(nib.Nifti1Image(image.astype(np.float32), affine), folder / "imagesTr" / f"{case}.nii.gz")
            nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), folder / "labelsTr" / f"{case}.nii.gz")
            cases.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
        write_msd_manifest(folder, self.name, self.label_names(), ["synthetic"], cases)
