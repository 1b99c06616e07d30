"""The MNI152 2009a T1 template (shipped inside nilearn) as a small tissue segmentation set.

Labels are the most probable of background, grey matter and white matter given nilearn's
tissue probability maps: p(GM), p(WM) and ``1 - p(GM) - p(WM)``. The template nilearn ships is
skull-stripped with CSF removed (it is ~0 outside GM/WM), so no CSF class can be derived from
it soundly and none is made.

The 2 mm volume (99 x 117 x 95) is cut into eight anatomical blocks: left/right hemisphere x
anterior/posterior x superior/inferior. The template is left-right symmetric to ~1e-16
("sym"), so a left block is the mirror image of its right partner: each pair shares one
``subject`` id, and the grouped split keeps a block and its mirror in the same split. Train,
val and test therefore hold different anatomy. This is a one-subject demo, not an accuracy
claim: the labels are close to a function of intensity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from medvision.data.sources import write_msd_manifest

LABEL_NAMES = ["background", "grey_matter", "white_matter"]


class MNI152Tissue:
    """Write the MNI152 tissue blocks as an MSD folder.

    Args:
        resolution: voxel size in mm passed to nilearn's loaders (1 or 2).
    """

    name = "mni152_tissue"

    def __init__(self, resolution: Literal[1, 2] = 2) -> None:
        self.resolution = resolution

    def params(self) -> dict[str, Any]:
        """The parameters that determine the written files."""
        return {"resolution": self.resolution}

    @staticmethod
    def tissue_labels(gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
        """Label map 0/1/2 = argmax(1 - p(GM) - p(WM), p(GM), p(WM))."""
        rest = np.clip(1.0 - gm - wm, 0.0, 1.0)
        return np.argmax(np.stack([rest, gm, wm]), axis=0).astype(np.uint8)

    def volumes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """T1 image, label map and affine of the whole template."""
        from nilearn import datasets

        t1 = datasets.load_mni152_template(resolution=self.resolution)
        gm = datasets.load_mni152_gm_template(resolution=self.resolution).get_fdata()
        wm = datasets.load_mni152_wm_template(resolution=self.resolution).get_fdata()
        image = t1.get_fdata().astype(np.float32)
        # nilearn's 2 mm resampling leaves ~1e-30 values outside the brain; they are zero in
        # the 1 mm template and must stay zero (foreground cropping, nonzero normalisation)
        image[image < 1e-3] = 0.0
        return image, self.tissue_labels(gm, wm), t1.affine

    @staticmethod
    def blocks(shape: tuple[int, ...]) -> list[tuple[str, str, tuple[slice, slice, slice]]]:
        """(case id, subject id, index slices) of the eight blocks of a RAS volume.

        The x midline (index ``(nx - 1) / 2`` for odd ``nx``) is left out so that left and right
        blocks are exact mirror images and share no voxel.
        """
        nx, ny, nz = shape
        half = nx // 2
        sides = {"left": slice(0, half), "right": slice(nx - half, nx)}  # RAS: low x index = left
        ap = {"posterior": slice(0, ny // 2), "anterior": slice(ny // 2, ny)}
        si = {"inferior": slice(0, nz // 2), "superior": slice(nz // 2, nz)}
        out = []
        for vert, zs in si.items():
            for front, ys in ap.items():
                for side, xs in sides.items():
                    out.append((f"{vert}_{front}_{side}", f"{vert}_{front}", (xs, ys, zs)))
        return out

    def write(self, folder: Path) -> None:
        """Write the eight image/label blocks and ``dataset.json`` into ``folder``."""
        import nibabel as nib

        image, label, affine = self.volumes()
        (folder / "imagesTr").mkdir()
        (folder / "labelsTr").mkdir()
        cases = []
        for case, subject, (xs, ys, zs) in self.blocks(image.shape):
            block_affine = affine.copy()
            block_affine[:3, 3] = affine[:3, :3] @ np.array([xs.start, ys.start, zs.start]) + affine[:3, 3]
            nib.save(nib.Nifti1Image(image[xs, ys, zs], block_affine), folder / "imagesTr" / f"{case}.nii.gz")
            nib.save(nib.Nifti1Image(label[xs, ys, zs], block_affine), folder / "labelsTr" / f"{case}.nii.gz")
            cases.append(
                {
                    "image": f"./imagesTr/{case}.nii.gz",
                    "label": f"./labelsTr/{case}.nii.gz",
                    "id": case,
                    "subject": subject,
                }
            )
        write_msd_manifest(folder, "MNI152_2009a_sym_tissue_blocks", LABEL_NAMES, ["T1w"], cases)
