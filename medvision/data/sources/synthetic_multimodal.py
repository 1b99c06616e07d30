"""Synthetic two-modality segmentation, written as NIfTI files and a CSV manifest (``image_t1,image_t2``).

Each case holds one or two balls (3D) or discs (2D), the label. Both modalities show them, each
alone enough to find them, with their own contrast and noise: ``t1`` bright on a noisy background,
on a 1 mm grid; ``t2`` dark on a cleaner one, on its own coarser grid (``t2_spacing`` mm, another
origin), so that loading must resample it onto the first modality's grid. The label lies on the
``t1`` grid. A network trained on both leans on the cleaner ``t2``; one trained with modality
dropout also segments from either modality alone.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Literal

import numpy as np


class SyntheticMultimodal:
    """Balls (3D) or discs (2D) seen by two modalities on different grids, with a CSV manifest.

    Args:
        spatial_dims: 2 or 3.
        num_cases: number of cases (each its own subject).
        size: edge length of the ``t1`` grid in voxels (1 mm).
        t2_spacing: voxel size (mm) of the ``t2`` grid, which covers the same field of view.
        t1_noise: noise std of ``t1`` relative to its object contrast.
        t2_noise: noise std of ``t2`` relative to its object contrast.
        seed: seed of the generator.
    """

    #: the manifest a written folder holds (:func:`medvision.data.sources.prepare` looks for it)
    manifest_name = "cases.csv"

    def __init__(
        self,
        spatial_dims: Literal[2, 3] = 3,
        num_cases: int = 12,
        size: int = 32,
        t2_spacing: float = 2.0,
        t1_noise: float = 0.6,
        t2_noise: float = 0.3,
        seed: int = 0,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims
        self.num_cases = num_cases
        self.size = size
        self.t2_spacing = t2_spacing
        self.t1_noise = t1_noise
        self.t2_noise = t2_noise
        self.seed = seed
        self.name = f"synthetic_multimodal{spatial_dims}d"

    def params(self) -> dict[str, Any]:
        """The parameters that determine the written files."""
        return {k: v for k, v in vars(self).items() if k != "name"}

    def _grid(self, spacing: float, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World coordinates (mm) of a grid's voxel centres ``(dims, *shape)`` and its affine."""
        n = max(2, round(self.size / spacing))
        index = np.indices((n,) * self.spatial_dims, dtype=np.float64)
        affine = np.eye(4)
        affine[: self.spatial_dims, : self.spatial_dims] *= spacing
        affine[:3, 3] = origin
        world = index * spacing + origin[: self.spatial_dims].reshape(-1, *([1] * self.spatial_dims))
        return world, affine

    def write(self, folder: Path) -> None:
        """Write ``num_cases`` cases (``t1``, ``t2``, label) and ``cases.csv`` into ``folder``."""
        import nibabel as nib

        rng = np.random.default_rng(self.seed)
        origin = np.array([-self.size / 2, -self.size / 3, 10.0])
        # the t2 grid starts a quarter of its voxel away: the grids' centres never coincide
        t1_world, t1_affine = self._grid(1.0, origin)
        shift = np.zeros(3)
        shift[: self.spatial_dims] = self.t2_spacing / 4 - 0.5
        t2_world, t2_affine = self._grid(self.t2_spacing, origin + shift)
        rows = []
        for i in range(self.num_cases):
            balls = []
            for _ in range(int(rng.integers(1, 3))):
                radius = rng.uniform(self.size / 9, self.size / 5)
                centre = origin[: self.spatial_dims] + rng.uniform(
                    radius + 1, self.size - radius - 1, self.spatial_dims
                )
                balls.append((centre, radius))

            def inside(world: np.ndarray, balls: list = balls) -> np.ndarray:
                shape = world.shape[1:]
                out = np.zeros(shape, dtype=bool)
                for centre, radius in balls:
                    out |= ((world - centre.reshape(-1, *([1] * len(shape)))) ** 2).sum(0) <= radius**2
                return out

            label = inside(t1_world)
            t1 = 100 + 40 * label + rng.normal(0, 40 * self.t1_noise, label.shape)
            t2_object = inside(t2_world)
            t2 = 300 - 80 * t2_object + rng.normal(0, 80 * self.t2_noise, t2_object.shape)
            case = f"case_{i:03d}"
            for name, array, affine in (
                ("t1", t1.astype(np.float32), t1_affine),
                ("t2", t2.astype(np.float32), t2_affine),
                ("label", label.astype(np.uint8), t1_affine),
            ):
                nib.save(nib.Nifti1Image(array, affine), folder / f"{case}_{name}.nii.gz")
            rows.append([f"{case}_t1.nii.gz", f"{case}_t2.nii.gz", f"{case}_label.nii.gz", case])
        with (folder / self.manifest_name).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image_t1", "image_t2", "label", "id"])
            writer.writerows(rows)
