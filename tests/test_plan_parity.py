"""Planner parity with nnU-Net v2 (issue 14, point 1), without nnU-Net: its rules, computed here
independently with numpy from the files, against medvision's fingerprint and planning rules.

- target spacing: the per-axis median, except nnU-Net's anisotropic rule (the thick axis gets its
  10th-percentile spacing when its median is > 3x the others' and its median size < 1/3 of theirs);
- normalisation: a channel named ``CT`` is clipped to the foreground 0.5/99.5 percentiles (each
  case weighing the same) and z-scored with the foreground mean and std; other names are z-scored
  per case, inside the nonzero mask when its box keeps < 0.75 of the image;
- topology: nnU-Net's stored 3d_fullres strides and kernels (``scripts/bench/peers/nnunet_plans``,
  made by nnU-Net's own planner) follow from its stored patch and spacing.

``scripts/bench/plan_parity.py`` prints the whole comparison with nnU-Net's plans.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medvision.data.fingerprint import fingerprint
from medvision.data.records import read_msd
from medvision.planning import rules

NNUNET_PLANS = Path(__file__).resolve().parents[1] / "scripts" / "bench" / "peers" / "nnunet_plans"


def _load(path: str) -> tuple[np.ndarray, list[float]]:
    import nibabel as nib

    img = nib.load(path)
    return np.asarray(img.dataobj), [float(z) for z in img.header.get_zooms()[:3]]


def _nonzero_box(image: np.ndarray) -> list[int]:
    """nnU-Net's crop: the bounding box of the nonzero voxels with holes filled."""
    from scipy.ndimage import binary_fill_holes

    mask = binary_fill_holes(image != 0)
    hits = np.nonzero(mask)
    return [int(h.max() - h.min() + 1) for h in hits]


def _files(info) -> list[tuple[np.ndarray, np.ndarray, list[float]]]:
    out = []
    for record in info.records:
        image, spacing = _load(record["image"])
        label, _ = _load(record["label"])
        out.append((image, label, spacing))
    return out


@pytest.fixture(scope="module")
def synthetic_ct(tmp_path_factory: pytest.TempPathFactory):
    """medvision's SyntheticCT, 4 cases (thick slices: 3.0-4.9 mm vs 0.71-0.86 mm in-plane, HU)."""
    from medvision.data.sources import prepare
    from medvision.data.sources.synthetic_ct import SyntheticCT

    root = prepare(SyntheticCT(num_cases=4, seed=0), tmp_path_factory.mktemp("parity") / "synthetic_ct")
    info = read_msd(root)
    fp = fingerprint(info.records, info.modalities, info.label_names, name=info.name, progress=False)
    return info, fp, _files(info)


def test_target_spacing_follows_nnunets_anisotropic_rule(synthetic_ct) -> None:
    _, fp, files = synthetic_ct
    spacings = np.array([s for _, _, s in files])
    sizes = np.array([_nonzero_box(image) for image, _, _ in files])
    # the files are RAS-diagonal: medvision's axes are the files' axes
    np.testing.assert_allclose(fp.spacings, spacings, rtol=1e-6)
    assert fp.shapes_after_crop.tolist() == sizes.tolist()
    median, median_size = np.median(spacings, axis=0), np.median(sizes, axis=0)
    thick = int(np.argmax(median))
    others = [a for a in range(3) if a != thick]
    # the set is one the rule applies to: both of nnU-Net's conditions hold
    assert median[thick] > 3 * median[others].max()
    assert median_size[thick] * 3 < median_size[others].min()
    expected = median.copy()
    expected[thick] = max(np.percentile(spacings[:, thick], 10), median[others].max() + 1e-5)
    assert expected[thick] < median[thick]

    spacing, why = rules.target_spacing(fp.spacings, fp.shapes_after_crop)
    np.testing.assert_allclose(spacing, expected, rtol=1e-6)
    assert "anisotropic" in why


def test_a_channel_named_ct_is_clipped_to_its_foreground_percentiles(synthetic_ct) -> None:
    info, fp, files = synthetic_ct
    assert info.modalities == ["CT"]
    values, weights = [], []
    for image, label, _ in files:
        fg = image[label > 0].astype(np.float64)  # every foreground class; the box is the whole image (air != 0)
        values.append(fg)
        weights.append(np.full(fg.size, 1.0 / fg.size))  # each case weighs the same
    v, w = np.concatenate(values), np.concatenate(weights)
    low, high = (np.percentile(v, q, weights=w, method="inverted_cdf") for q in (0.5, 99.5))
    mean = np.average(v, weights=w)
    std = np.sqrt(np.average((v - mean) ** 2, weights=w))

    norms, _ = rules.normalisation(fp.modalities, fp.intensity, fp.median_relative_size)
    (norm,) = norms
    assert norm.scheme == "ct" and not norm.use_mask
    # medvision samples 10k foreground voxels per case: sampling noise within 1% (of the clip range)
    assert norm.clip is not None and norm.mean is not None and norm.std is not None
    assert abs(norm.clip[0] - low) <= 0.01 * (high - low)
    assert abs(norm.clip[1] - high) <= 0.01 * (high - low)
    assert norm.mean == pytest.approx(mean, rel=0.01)
    assert norm.std == pytest.approx(std, rel=0.01)
    # the name must be exactly CT (any case), as nnU-Net matches it; anything else is z-scored
    assert rules.normalisation(["ct"], fp.intensity, 1.0)[0][0].scheme == "ct"
    assert rules.normalisation(["CT_arterial"], fp.intensity, 1.0)[0][0].scheme == "zscore"


def _write_isotropic_set(root: Path, background: str, spacing: tuple[float, float, float]) -> None:
    """4 small MR-like cases: a bright ellipsoid (label 1 inside it) in a zero or a noisy background."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for i in range(4):
        shape = (36 + 2 * i, 40, 30)
        x, y, z = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
        r = ((x - shape[0] / 2) / 11) ** 2 + ((y - 20) / 12) ** 2 + ((z - 15) / 9) ** 2
        image = np.where(r <= 1, 100 + rng.normal(0, 10, shape), 0.0)
        if background == "noise":
            image = np.where(r <= 1, image, np.abs(rng.normal(5, 3, shape)) + 1)
        label = (r <= 0.6).astype(np.uint8)
        affine = np.diag([*spacing, 1.0])
        nib.save(nib.Nifti1Image(image.astype(np.float32), affine), root / "imagesTr" / f"mr_{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"mr_{i}.nii.gz")
        training.append({"image": f"./imagesTr/mr_{i}.nii.gz", "label": f"./labelsTr/mr_{i}.nii.gz"})
    manifest = {"name": "tiny_mr", "modality": {"0": "T1"}, "labels": {"0": "background", "1": "brain"}}
    (root / "dataset.json").write_text(json.dumps({**manifest, "training": training}))


@pytest.mark.parametrize(
    ("background", "spacing"),
    [("zero", (1.0, 1.0, 1.0)), ("noise", (1.0, 1.0, 3.5))],
    ids=["skull-stripped", "noisy-thick-but-many-slices"],
)
def test_other_channels_are_zscored_inside_the_mask_when_the_box_is_small(
    tmp_path: Path, background: str, spacing: tuple[float, float, float]
) -> None:
    _write_isotropic_set(tmp_path, background, spacing)
    info = read_msd(tmp_path)
    fp = fingerprint(info.records, info.modalities, info.label_names, progress=False)
    files = _files(info)
    relative = np.median([np.prod(_nonzero_box(image)) / image.size for image, _, _ in files])
    assert fp.median_relative_size == pytest.approx(relative)
    assert (relative < 0.75) == (background == "zero")

    (norm,), _ = rules.normalisation(fp.modalities, fp.intensity, fp.median_relative_size)
    assert norm.scheme == "zscore"
    assert norm.use_mask == (relative < 0.75)
    # the median spacing: 3.5 mm is > 3x the others, but 30 slices are not < 1/3 of 36-42 voxels
    expected = np.median([s for _, _, s in files], axis=0)
    spacing_planned, why = rules.target_spacing(fp.spacings, fp.shapes_after_crop)
    np.testing.assert_allclose(spacing_planned, expected, rtol=1e-6)
    assert "anisotropic" not in why


@pytest.mark.parametrize("name", ["mni152", "synthetic_ct", "dipy_b0"])
def test_topology_reproduces_nnunets_stored_plans(name: str) -> None:
    plan = json.loads((NNUNET_PLANS / f"{name}.json").read_text())
    cfg = plan["configurations"]["3d_fullres"]
    # these sets keep their file axes' order under RAS reorientation (dipy's only flip)
    spacing, patch = cfg["spacing_file_axes"], cfg["patch_size_file_axes"]

    topo = rules.topology(spacing, patch)
    assert topo.strides == cfg["pool_op_kernel_sizes_file_axes"]
    assert topo.kernel_size == cfg["conv_kernel_sizes_file_axes"]
    assert topo.stages == cfg["n_stages"]
    assert all(p % d == 0 for p, d in zip(patch, topo.divisor, strict=True))
    # and the patch is nnU-Net's start: 256^3 voxels in the aspect of 1/spacing, clipped to the
    # median resampled image, padded to its net's divisibility (8 GB hold it: no shrinking here)
    start = rules.initial_patch(spacing, cfg["median_image_size_file_axes"], 256**3)
    assert rules.round_patch(start, rules.topology(spacing, start).divisor) == patch
