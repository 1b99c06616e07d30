"""A synthetic thick-slice CT set in Hounsfield units: bone and one soft-tissue organ to segment.

Each case is a small torso-like phantom scanned the way routine CT often is: fine in-plane
(0.7-0.9 mm) and thick slices (3-5 mm), so the slice axis is more than three times coarser than
the in-plane axes (the case nnU-Net's anisotropic spacing and pooling rules are made for). Every
case draws its own geometry, spacing, shape and noise from one seed, so the set is a set of
"patients", not copies.

Tissues and their HU (integer, ``int16`` files like real CT):

- air outside the body and gas pockets in the abdomen: -1000 (air is nonzero: there is no
  "background = 0" in CT, which is why nonzero-mask normalisation is wrong for it);
- subcutaneous and intra-abdominal fat: about -100;
- muscle / soft tissue: about 40;
- a second, unlabelled soft organ ("spleen"): about 57, the organ's own range;
- the labelled organ (label 2, "liver"): about 57 with a low-frequency texture, only a few HU
  above the surrounding soft tissue and equal to the unlabelled organ, so a threshold cannot
  find it: location and shape must;
- bone (label 1): a vertebral column (cortical shell ~1000 HU, cancellous core ~250 HU, with
  ~80 HU intervertebral discs between vertebrae, so bone changes along the slice axis) and rib
  segments (~700 HU) under the body wall, present in bands along the slice axis.

Images are averaged over three sub-slices per slice (the partial-volume blur of thick slices);
labels are taken at the slice centre. Noise is Gaussian, slightly correlated in-plane, with a
per-case standard deviation of 8-20 HU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medvision.data.sources import write_msd_manifest

LABEL_NAMES = ["background", "bone", "liver"]

#: HU of the tissues (means; each case jitters them a little)
HU = {
    "air": -1000.0,
    "fat": -100.0,
    "soft": 40.0,
    "organ": 57.0,
    "disc": 80.0,
    "cancellous": 250.0,
    "cortical": 1000.0,
    "rib": 700.0,
}


class SyntheticCT:
    """Write thick-slice CT-like phantoms (HU, ``int16``) with bone and organ labels as an MSD folder.

    Args:
        num_cases: number of cases (each its own subject).
        inplane_size: range ``[lo, hi]`` of the in-plane edge in voxels (x and y drawn apart).
        num_slices: range ``[lo, hi]`` of the number of slices.
        inplane_spacing: range ``[lo, hi]`` of the in-plane voxel size in mm (one per case, x = y).
        slice_spacing: range ``[lo, hi]`` of the slice spacing (= thickness) in mm.
        noise_hu: range ``[lo, hi]`` of the noise standard deviation in HU.
        organ: add the soft-tissue organ (label 2); without it the set has bone only.
        seed: seed of the generator (case ``i`` uses the stream ``(seed, i)``).
    """

    name = "synthetic_ct"

    def __init__(
        self,
        num_cases: int = 8,
        inplane_size: tuple[int, int] = (160, 192),
        num_slices: tuple[int, int] = (32, 44),
        inplane_spacing: tuple[float, float] = (0.7, 0.9),
        slice_spacing: tuple[float, float] = (3.0, 5.0),
        noise_hu: tuple[float, float] = (8.0, 20.0),
        organ: bool = True,
        seed: int = 0,
    ) -> None:
        for key, (lo, hi) in {
            "inplane_size": inplane_size,
            "num_slices": num_slices,
            "inplane_spacing": inplane_spacing,
            "slice_spacing": slice_spacing,
            "noise_hu": noise_hu,
        }.items():
            if not 0 < lo <= hi:
                raise ValueError(f"{key} must be a range 0 < lo <= hi, got {[lo, hi]}")
        self.num_cases = num_cases
        self.inplane_size = [int(v) for v in inplane_size]
        self.num_slices = [int(v) for v in num_slices]
        self.inplane_spacing = [float(v) for v in inplane_spacing]
        self.slice_spacing = [float(v) for v in slice_spacing]
        self.noise_hu = [float(v) for v in noise_hu]
        self.organ = organ
        self.seed = seed

    def params(self) -> dict[str, Any]:
        """The parameters that determine the written files."""
        return dict(vars(self))

    def label_names(self) -> list[str]:
        """``background``, ``bone`` and (with ``organ``) ``liver``."""
        return LABEL_NAMES if self.organ else LABEL_NAMES[:2]

    def case(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image (HU, ``int16``, array axes x, y, z), label map (``uint8``) and RAS affine of case ``index``."""
        rng = np.random.default_rng([self.seed, index])
        nx, ny = (int(rng.integers(self.inplane_size[0], self.inplane_size[1] + 1)) for _ in range(2))
        nz = int(rng.integers(self.num_slices[0], self.num_slices[1] + 1))
        sxy = round(float(rng.uniform(*self.inplane_spacing)), 4)
        sz = round(float(rng.uniform(*self.slice_spacing)), 3)
        sub = 3  # sub-slices averaged per slice: the partial-volume effect of thick slices
        offsets = (np.arange(sub) - (sub - 1) / 2) / sub
        image = np.zeros((nx, ny, nz), np.float32)
        label = np.zeros((nx, ny, nz), np.uint8)
        phantom = _Phantom(rng, nx * sxy, ny * sxy, nz * sz, organ=self.organ)
        x = (np.arange(nx, dtype=np.float32) + 0.5) * sxy
        y = (np.arange(ny, dtype=np.float32) + 0.5) * sxy
        for k in range(nz):
            for j, off in enumerate(offsets):
                hu, lab = phantom.slice(x, y, (k + 0.5 + off) * sz)
                image[:, :, k] += hu / sub
                if j == (sub - 1) // 2:
                    label[:, :, k] = lab
        image += _correlated_noise(rng, image.shape, float(rng.uniform(*self.noise_hu)))
        hu = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
        affine = np.diag([sxy, sxy, sz, 1.0])
        affine[:3, 3] = [-nx * sxy / 2, -ny * sxy / 2, -nz * sz / 2]
        return hu, label, affine

    def write(self, folder: Path) -> None:
        """Write ``num_cases`` image/label pairs and ``dataset.json`` into ``folder``."""
        import nibabel as nib

        (folder / "imagesTr").mkdir()
        (folder / "labelsTr").mkdir()
        cases = []
        for i in range(self.num_cases):
            image, label, affine = self.case(i)
            case = f"ct_{i:03d}"
            img = nib.Nifti1Image(image, affine)
            img.header.set_xyzt_units("mm")
            seg = nib.Nifti1Image(label, affine)
            seg.header.set_xyzt_units("mm")
            nib.save(img, folder / "imagesTr" / f"{case}.nii.gz")
            nib.save(seg, folder / "labelsTr" / f"{case}.nii.gz")
            cases.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz", "id": case})
        write_msd_manifest(folder, "synthetic_thick_slice_ct", self.label_names(), ["CT"], cases)


class _Phantom:
    """One case's anatomy in mm; :meth:`slice` renders the axial plane at height ``z``."""

    def __init__(self, rng: np.random.Generator, fov_x: float, fov_y: float, fov_z: float, organ: bool) -> None:
        self.rng = rng
        self.organ = organ
        self.hu = {k: v + float(rng.normal(0, 0.05 * abs(v) if k != "soft" else 2.0)) for k, v in HU.items()}
        self.hu["air"] = HU["air"]
        self.hu["organ"] = self.hu["soft"] + float(rng.uniform(8.0, 14.0))  # a few HU above soft tissue
        # body: an ellipse that slowly changes along z
        self.cx = fov_x / 2 + float(rng.normal(0, 0.02 * fov_x))
        self.cy = fov_y / 2 + float(rng.normal(0, 0.02 * fov_y))
        self.ax = float(rng.uniform(0.36, 0.44)) * fov_x
        self.ay = float(rng.uniform(0.26, 0.34)) * fov_y
        self.fat = float(rng.uniform(0.06, 0.14)) * min(self.ax, self.ay)  # subcutaneous fat thickness
        self.fov_z = fov_z
        # spine, posterior midline (+y is anterior in RAS, so posterior = low y)
        self.spine_x = self.cx + float(rng.normal(0, 1.5))
        self.spine_y = self.cy - 0.55 * self.ay
        self.vert_r = (float(rng.uniform(0.11, 0.14)) * self.ax, float(rng.uniform(0.16, 0.2)) * self.ay)
        self.cortex = float(rng.uniform(1.2, 2.2))
        self.vert_height = float(rng.uniform(20.0, 28.0))
        self.disc_height = float(rng.uniform(5.0, 9.0))
        self.vert_phase = float(rng.uniform(0, self.vert_height + self.disc_height))
        # ribs: arcs under the body wall in z-bands
        self.rib_period = float(rng.uniform(18.0, 26.0))
        self.rib_width = float(rng.uniform(7.0, 11.0))
        self.rib_phase = float(rng.uniform(0, self.rib_period))
        self.rib_r = float(rng.uniform(2.5, 4.0))
        n_ribs = int(rng.integers(4, 7))  # per side; angles from the spine (posterior) round to the front
        self.rib_angles = np.concatenate([-np.pi / 2 + s * np.linspace(0.45, 2.3, n_ribs) for s in (-1.0, 1.0)])
        # organs: the labelled "liver" on the patient's right (RAS+: x grows toward the right),
        # an unlabelled organ of the same HU on the left
        self.organ_c = np.array([self.cx + 0.35 * self.ax, self.cy + 0.1 * self.ay, fov_z * rng.uniform(0.4, 0.6)])
        self.organ_r = np.array([0.38 * self.ax, 0.45 * self.ay, 0.45 * fov_z]) * rng.uniform(0.8, 1.1, 3)
        self.organ_wobble = rng.normal(0, 0.08, (3, 2))  # low-order shape harmonics
        self.decoy_c = np.array([self.cx - 0.5 * self.ax, self.cy - 0.05 * self.ay, fov_z * rng.uniform(0.3, 0.7)])
        self.decoy_r = np.array([0.16 * self.ax, 0.22 * self.ay, 0.3 * fov_z]) * rng.uniform(0.8, 1.2, 3)
        # gas pockets and fat blobs in the abdomen
        self.gas = [
            (
                self.cx + rng.normal(0, 0.25 * self.ax),
                self.cy + rng.uniform(0.1, 0.5) * self.ay,
                rng.uniform(0, fov_z),
                rng.uniform(3, 8),
            )
            for _ in range(int(rng.integers(3, 8)))
        ]
        self.fat_blobs = [
            (
                self.cx + rng.normal(0, 0.3 * self.ax),
                self.cy + rng.normal(0, 0.3 * self.ay),
                rng.uniform(0, fov_z),
                rng.uniform(5, 15),
            )
            for _ in range(int(rng.integers(4, 10)))
        ]
        # texture of the organ: a coarse random field, trilinearly sampled
        self.tex = rng.normal(0, 1, (9, 9, 9)).astype(np.float32)
        self.tex_amp = float(rng.uniform(3.0, 6.0))

    def _organ_mask(
        self, xx: np.ndarray, yy: np.ndarray, z: float, c: np.ndarray, r: np.ndarray, wobble: np.ndarray | None = None
    ) -> np.ndarray:
        dx, dy, dz = (xx - c[0]) / r[0], (yy - c[1]) / r[1], (z - c[2]) / r[2]
        rho = dx**2 + dy**2 + dz**2
        if wobble is not None:
            theta = np.arctan2(dy, dx)
            bump = sum(w[0] * np.cos((m + 2) * theta) + w[1] * np.sin((m + 2) * theta) for m, w in enumerate(wobble))
            return rho < (1.0 + bump) ** 2
        return rho < 1.0

    def slice(self, x: np.ndarray, y: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
        """HU (float) and labels of the axial plane at height ``z`` mm, arrays indexed ``[x, y]``."""
        xx, yy = np.meshgrid(x, y, indexing="ij")
        zf = z / self.fov_z
        ax = self.ax * (1.0 + 0.06 * np.sin(2 * np.pi * zf))  # the body's outline changes along z
        ay = self.ay * (1.0 + 0.04 * np.cos(2 * np.pi * zf))
        rb = ((xx - self.cx) / ax) ** 2 + ((yy - self.cy) / ay) ** 2
        inner = ((xx - self.cx) / (ax - self.fat)) ** 2 + ((yy - self.cy) / (ay - self.fat)) ** 2
        hu = np.full(xx.shape, self.hu["air"], np.float32)
        lab = np.zeros(xx.shape, np.uint8)
        hu[rb < 1.0] = self.hu["fat"]
        cavity = inner < 1.0
        hu[cavity] = self.hu["soft"]
        for bx, by, bz, br in self.fat_blobs:
            if abs(z - bz) < br:
                rr = br**2 - (z - bz) ** 2
                hu[cavity & (((xx - bx) ** 2 + (yy - by) ** 2) < rr)] = self.hu["fat"]
        if self.organ:
            decoy = cavity & self._organ_mask(xx, yy, z, self.decoy_c, self.decoy_r)
            hu[decoy] = self.hu["organ"]
            liver = cavity & self._organ_mask(xx, yy, z, self.organ_c, self.organ_r, self.organ_wobble)
            hu[liver] = self.hu["organ"] + self.tex_amp * self._texture(xx[liver], yy[liver], z)
            lab[liver] = 2
        for gx, gy, gz, gr in self.gas:
            if abs(z - gz) < gr:
                gas = cavity & (((xx - gx) ** 2 + (yy - gy) ** 2) < gr**2 - (z - gz) ** 2)
                hu[gas] = self.hu["air"]
                lab[gas] = 0
        # vertebra or disc, depending on where z falls in the column's period
        period = self.vert_height + self.disc_height
        in_body = ((z + self.vert_phase) % period) < self.vert_height
        rv = ((xx - self.spine_x) / self.vert_r[0]) ** 2 + ((yy - self.spine_y) / self.vert_r[1]) ** 2
        shell = ((xx - self.spine_x) / (self.vert_r[0] - self.cortex)) ** 2 + (
            (yy - self.spine_y) / (self.vert_r[1] - self.cortex)
        ) ** 2
        column = rv < 1.0
        if in_body:
            hu[column] = self.hu["cancellous"]
            hu[column & (shell >= 1.0)] = self.hu["cortical"]
            # spinous process behind the body
            sp = (
                ((xx - self.spine_x) / (0.3 * self.vert_r[0])) ** 2
                + ((yy - (self.spine_y - 1.6 * self.vert_r[1])) / (0.7 * self.vert_r[1])) ** 2
            ) < 1.0
            hu[sp] = self.hu["cortical"]
            lab[column | sp] = 1
        else:
            hu[column] = self.hu["disc"]
            lab[column] = 0
        # ribs: round cross-sections just inside the fat layer, in bands along z; they slope, so
        # their angles drift with z
        band = (z + self.rib_phase) % self.rib_period
        if band < self.rib_width:
            drift = 0.15 * band / self.rib_width
            for theta in self.rib_angles + drift * np.sign(np.cos(self.rib_angles)):
                rx = self.cx + (ax - self.fat - self.rib_r) * np.cos(theta)
                ry = self.cy + (ay - self.fat - self.rib_r) * np.sin(theta)
                rib = ((xx - rx) ** 2 + (yy - ry) ** 2) < self.rib_r**2
                hu[rib] = self.hu["rib"]
                lab[rib] = 1
        return hu, lab

    def _texture(self, xs: np.ndarray, ys: np.ndarray, z: float) -> np.ndarray:
        """Zero-mean, unit-ish smooth random field at the points (trilinear in a 9^3 lattice over the organ)."""
        from scipy.ndimage import map_coordinates

        c, r = self.organ_c, self.organ_r
        coords = np.stack([(xs - c[0]) / r[0], (ys - c[1]) / r[1], np.full(xs.shape, (z - c[2]) / r[2])])
        coords = (np.clip(coords, -1.0, 1.0) + 1.0) * 4.0
        return map_coordinates(self.tex, coords, order=1, mode="nearest")


def _correlated_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian noise of standard deviation ``sigma``, correlated ~1 voxel in-plane (a CT reconstruction kernel)."""
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=(0.7, 0.7, 0.0))
    return noise * (sigma / max(float(noise.std()), 1e-6))
