"""Several images per case for segmentation (issue 17): modalities on different grids, the audit of
missing or misplaced modalities, per-modality normalisation, modality dropout, a modality missing at
prediction (``missing_modalities=zero``) and late fusion.

Every file is a real NIfTI file written with nibabel: a ball seen by ``t1`` on a 1 mm grid and by
``t2`` on a 2 mm grid with another origin (the label on the t1 grid), read through the real CSV
manifest, MONAI transforms, Lightning runs and ``medvision-predict``'s library call.

Modality dropout figures (2D synthetic set of ``medvision.data.sources.synthetic_multimodal``: 24
cases of 48x48, t1 noisy (0.7), t2 clean (0.15), both on one grid; U-Net [8,16,32], 15 epochs; test
Dice of the 5 test cases; 2-core CPU), full input / t2 zeroed / t1 zeroed:

- without dropout, seeds 0 / 1 / 2: 0.931 / 0.209 / 0.931; 0.930 / 0.404 / 0.929; 0.948 / 0.458 / 0.945
  (t2 zeroed keeps 22 / 43 / 48% of the full Dice: the net leans on the cleaner t2);
- ``model.modality_dropout=0.5``: 0.916 / 0.887 / 0.925; 0.916 / 0.879 / 0.920; 0.941 / 0.899 / 0.945
  (t2 zeroed keeps 97 / 96 / 96%).

Zeroing t1 costs nothing in either (t2 alone carries the object), so the test asserts the 80% bound
on the zeroed t2, and on both modalities with dropout.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_in, train_in

SIZE = 20
#: t1: 1 mm voxels; t2: 2 mm voxels over the same field of view, origin half a t1 voxel off
T1_AFFINE = np.array([[1.0, 0, 0, -10.0], [0, 1.0, 0, 4.0], [0, 0, 1.0, 2.0], [0, 0, 0, 1]])
T2_AFFINE = np.array([[2.0, 0, 0, -9.5], [0, 2.0, 0, 4.5], [0, 0, 2.0, 2.5], [0, 0, 0, 1]])
LABELS = ["background", "ball"]


def _ball(affine: np.ndarray, shape: tuple[int, ...], centre: np.ndarray, radius: float) -> np.ndarray:
    """Where the voxel centres of a grid lie inside a ball given in world coordinates (mm)."""
    index = np.indices(shape).reshape(3, -1)
    world = affine[:3, :3] @ index + affine[:3, 3:]
    return (((world - centre[:, None]) ** 2).sum(0) <= radius**2).reshape(shape)


def write_case(folder: Path, name: str, seed: int, t2_affine: np.ndarray = T2_AFFINE) -> dict[str, Path]:
    """``<name>_t1.nii.gz`` (1 mm, bright ball), ``<name>_t2.nii.gz`` (2 mm, dark ball), label on t1's grid."""
    rng = np.random.default_rng(seed)
    centre = T1_AFFINE[:3, 3] + rng.uniform(7, 12, 3)
    radius = rng.uniform(3.5, 5.0)
    label = _ball(T1_AFFINE, (SIZE,) * 3, centre, radius)
    t1 = 100 + 50 * label + rng.normal(0, 10, label.shape)
    t2_ball = _ball(t2_affine, (SIZE // 2,) * 3, centre, radius)
    t2 = 400 - 150 * t2_ball + rng.normal(0, 20, t2_ball.shape)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"t1": folder / f"{name}_t1.nii.gz", "t2": folder / f"{name}_t2.nii.gz", "label": folder / f"{name}.nii.gz"}
    nib.save(nib.Nifti1Image(t1.astype(np.float32), T1_AFFINE), files["t1"])
    nib.save(nib.Nifti1Image(t2.astype(np.float32), t2_affine), files["t2"])
    nib.save(nib.Nifti1Image(label.astype(np.uint8), T1_AFFINE), files["label"])
    return files


def write_manifest(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float(2 * (a & b).sum() / max(int(a.sum() + b.sum()), 1))


def _data(manifest: Path) -> list[str]:
    """A CSV whose image columns are named by config (``data.image_columns``), planning off."""
    return [
        "data=csv",
        f"data.manifest={manifest}",
        "data.image_columns=[t1,t2]",
        f"data.label_names=[{','.join(LABELS)}]",
        "plan=none",
    ]


#: a tiny but complete 3D run: 16^3 patches, a 2-level U-Net, 2 epochs, test on the best checkpoint
TINY_3D = [
    "data.patch_size=[16,16,16]",
    "data.transforms.pixdim=[1.0,1.0,1.0]",
    "data.transforms.num_samples=1",
    "data.num_workers=0",
    "model.net.channels=[8,16]",
    "model.net.strides=[2]",
    "model.net.num_res_units=1",
    "model.modality_dropout=0.25",
    "trainer.max_epochs=2",
    "callbacks.overlays=null",
    "logger=[]",
    "tta=none",
    "seed=0",
]


# ----------------------------------------------------------------------------- loading and the audit
def test_modalities_are_resampled_onto_the_first_ones_grid(tmp_path: Path) -> None:
    from monai.transforms import LoadImaged

    from medvision.data.multimodal import LoadModalitiesd

    files = write_case(tmp_path, "a", seed=0)
    load = LoadModalitiesd(keys=["image", "label"], image_only=True)
    data = load({"image": [str(files["t1"]), str(files["t2"])], "label": str(files["label"])})
    image = data["image"]
    assert tuple(image.shape) == (2, SIZE, SIZE, SIZE)
    assert image.meta["filename_or_obj"] == str(files["t1"])
    np.testing.assert_allclose(np.asarray(image.affine), T1_AFFINE)
    # the t1 channel is t1 as stored; the t2 channel shows the same ball (dark) on t1's grid
    np.testing.assert_array_equal(image[0].numpy(), nib.load(files["t1"]).get_fdata(dtype=np.float32))
    label = np.asarray(nib.load(files["label"]).dataobj) > 0
    assert dice(image[1].numpy() < 325, label) > 0.75  # a ball of radius ~2 voxels of 2 mm, interpolated
    assert dice(image[1].numpy() > 325, label) < 0.1

    # one grid: exactly what LoadImaged stacks
    same = [str(files["t1"]), str(files["t1"])]
    ours = LoadModalitiesd(keys=["image"], image_only=True)({"image": same})["image"]
    monai = LoadImaged(keys=["image"], image_only=True)({"image": same})["image"]
    assert torch.equal(ours.as_tensor(), monai.as_tensor()) and ours.meta["original_channel_dim"] == 0


def test_audit_names_a_missing_or_misplaced_modality(tmp_path: Path, compose_run) -> None:
    far = T2_AFFINE.copy()
    far[:3, 3] += 500.0  # t2 of another scan: no voxel in common with t1
    cases = {f"case_{i}": write_case(tmp_path, f"case_{i}", seed=i) for i in range(5)}
    cases["case_far"] = write_case(tmp_path, "case_far", seed=9, t2_affine=far)
    rows = [[str(f["t1"]), str(f["t2"]), str(f["label"]), name] for name, f in cases.items()]
    cases["case_1"]["t2"].unlink()  # a second file that does not exist
    rows[2][1] = ""  # case_2: an empty t2 cell
    on_t2 = tmp_path / "case_3_label_on_t2.nii.gz"  # case_3: its label drawn on t2's grid, not t1's
    t2_ball = np.asarray(nib.load(cases["case_3"]["t2"]).dataobj) < 325
    nib.save(nib.Nifti1Image(t2_ball.astype(np.uint8), T2_AFFINE), on_t2)
    rows[3][2] = str(on_t2)
    manifest = write_manifest(tmp_path / "cases.csv", ["t1", "t2", "label", "id"], rows)
    report = instantiate(compose_run(_data(manifest)).data).run_audit()

    found = {(p.case, p.check, Path(p.file).name) for p in report.errors}
    assert found == {
        ("case_1", "missing", "case_1_t2.nii.gz"),
        ("case_2", "missing", "cases.csv"),
        ("case_3", "shape", "case_3_t1.nii.gz"),
        ("case_far", "overlap", "case_far_t2.nii.gz"),
    }
    by_case = {p.case: p for p in report.errors}
    for case in ("case_1", "case_2"):
        assert "modality t2" in by_case[case].message, by_case[case].message
        assert "missing_modalities=zero" in by_case[case].fix and "on_invalid=skip" in by_case[case].fix
    assert "empty" in by_case["case_2"].message
    assert "first modality's grid" in by_case["case_3"].message and "FIRST" in by_case["case_3"].fix
    assert "do not overlap" in by_case["case_far"].message and "modality t1" in by_case["case_far"].message
    assert report.bad_cases == ["case_1", "case_2", "case_3", "case_far"]  # case_0 and case_4 are fine


def test_each_modality_is_normalised_by_its_own_scheme(tmp_path: Path) -> None:
    """A CT beside an MR: the planner's per-channel rule gives CT clipping + the dataset's foreground
    z-score for the first and a per-case z-score for the second, in one step."""
    from medvision.data.fingerprint import fingerprint
    from medvision.data.multimodal import LoadModalitiesd
    from medvision.data.records import read_csv
    from medvision.planning.plan import intensity_transform
    from medvision.planning.rules import normalisation

    cases = [write_case(tmp_path, f"c{i}", seed=i) for i in range(3)]
    rows = [[str(f["t1"]), str(f["t2"]), str(f["label"])] for f in cases]
    info = read_csv(write_manifest(tmp_path / "ct_mr.csv", ["image_ct", "image_mr", "label"], rows), LABELS)
    assert info.modalities == ["ct", "mr"]
    fp = fingerprint(info.records, info.modalities, LABELS, samples_per_case=2000)
    norms, rule = normalisation(fp.modalities, fp.intensity, fp.median_relative_size)
    assert [n.scheme for n in norms] == ["ct", "zscore"] and "ct: CT" in rule
    step = intensity_transform(norms)
    assert step["_target_"] == "medvision.data.multimodal.ChannelIntensityd"
    image = LoadModalitiesd(keys=["image"], image_only=True)({"image": info.records[0]["image"]})["image"]
    out = instantiate(step)({"image": image})["image"]
    ct, mr = image[0].numpy(), image[1].numpy()
    low, high = norms[0].clip
    np.testing.assert_allclose(out[0].numpy(), (np.clip(ct, low, high) - norms[0].mean) / norms[0].std, atol=1e-4)
    np.testing.assert_allclose(out[1].numpy(), (mr - mr.mean()) / mr.std(), atol=1e-3)


# ----------------------------------------------------------------------------- train and predict
def test_two_grids_train_and_the_mask_is_on_the_first_modalitys_grid(
    tmp_path: Path, medvision_home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from medvision.inference.predict import PARTIAL_FAILURE_EXIT_CODE, predict

    data = tmp_path / "data"
    cases = {f"case_{i:02d}": write_case(data, f"case_{i:02d}", seed=i) for i in range(8)}
    rows = [[str(f["t1"]), str(f["t2"]), str(f["label"]), name] for name, f in cases.items()]
    manifest = write_manifest(data / "cases.csv", ["t1", "t2", "label", "id"], rows)
    done = train_in(medvision_home, tmp_path / "run", [*_data(manifest), *TINY_3D])
    assert 0.0 <= done.metrics["test/dice_ball"] <= 1.0  # scored against the label files, on t1's grid
    ckpt = done.best_ckpt

    def predict_into(name: str, source: Path, *extra: str):
        cfg = compose_in(
            medvision_home,
            tmp_path / f"{name}_run",
            [f"ckpt_path={ckpt}", f"input={source}", f"output={tmp_path / name}", "device=cpu", *extra],
            config_name="predict",
        )
        return predict(cfg), tmp_path / name, tmp_path / f"{name}_run" / "predict_summary.json"

    # a CSV of new cases (the training's columns): masks on each case's t1 grid
    new = {n: write_case(tmp_path / "new", n, seed=20 + k) for k, n in enumerate(["new_a", "new_b"])}
    listed = write_manifest(
        tmp_path / "new.csv", ["id", "t2", "t1"], [[n, str(f["t2"]), str(f["t1"])] for n, f in new.items()]
    )
    summary, out, _ = predict_into("from_csv", listed)
    assert summary.exit_code == 0 and sorted(summary.written) == ["new_a", "new_b"]
    for name, files in new.items():
        mask = nib.load(out / f"{name}.nii.gz")
        assert mask.shape == nib.load(files["t1"]).shape == (SIZE,) * 3
        np.testing.assert_allclose(mask.affine, T1_AFFINE, atol=1e-5)

    # a folder in nnU-Net's naming, one case lacking its t2 (channel 0001) file
    folder = tmp_path / "folder"
    folder.mkdir()
    for name, files in new.items():
        (folder / f"{name}_0000.nii.gz").write_bytes(files["t1"].read_bytes())
        if name == "new_a":
            (folder / f"{name}_0001.nii.gz").write_bytes(files["t2"].read_bytes())
    summary, out, _ = predict_into("strict", folder)  # missing_modalities=error (default)
    assert summary.exit_code == PARTIAL_FAILURE_EXIT_CODE and list(summary.written) == ["new_a"]
    problem = summary.failed["new_b"]
    assert "modality t2 is missing" in problem and "new_b_0001.nii.gz" in problem
    assert "missing_modalities=zero" in problem
    capfd.readouterr()

    summary, out, summary_file = predict_into("zeroed", folder, "missing_modalities=zero")
    assert summary.exit_code == 0 and sorted(summary.written) == ["new_a", "new_b"]
    assert summary.filled == {"new_b": ["t2"]}
    assert json.loads(summary_file.read_text())["filled"] == {"new_b": ["t2"]}
    printed = capfd.readouterr()
    assert "filled new_b: t2 missing, zeroed" in " ".join((printed.out + printed.err).split())
    mask = nib.load(out / "new_b.nii.gz")
    assert mask.shape == (SIZE,) * 3
    np.testing.assert_allclose(mask.affine, T1_AFFINE, atol=1e-5)


def _dropout_run(home: Path, out: Path, probability: float) -> tuple[object, dict[str, float]]:
    """Train the 2D two-modality set with ``model.modality_dropout=probability``; Dice of the test
    split with the full input, with t2 zeroed and with t1 zeroed (network input, preprocessed space)."""
    from medvision.models.loading import module_from_checkpoint

    run = train_in(
        home,
        out,
        [
            "data=synthetic_multimodal",
            "data.source.spatial_dims=2",
            "data.spatial_dims=2",
            "data/transforms=seg2d",
            "data.source.num_cases=24",
            "data.source.size=48",
            "data.source.t2_spacing=1.0",
            "data.source.t1_noise=0.7",
            "data.source.t2_noise=0.15",
            "data.patch_size=[32,32]",
            "data.num_workers=0",
            "model.net.channels=[8,16,32]",
            "model.net.strides=[2,2]",
            "model.net.num_res_units=1",
            f"model.modality_dropout={probability}",
            "trainer.max_epochs=15",
            "trainer.check_val_every_n_epoch=5",
            "callbacks.overlays=null",
            "logger=[]",
            "tta=none",
            "test=false",
            "seed=0",
        ],
    )
    module, _ = module_from_checkpoint(run.best_ckpt)
    assert module.modality_dropout == probability and module.modalities == ["t1", "t2"]
    datamodule = instantiate(run.cfg.data)
    datamodule.setup("test")
    scores: dict[str, list[float]] = {"full": [], "t2 zeroed": [], "t1 zeroed": []}
    for sample in datamodule.dataset("test"):
        image, label = sample["image"].as_tensor()[None], sample["label"].as_tensor()[0].numpy()
        for condition, channel in (("full", None), ("t2 zeroed", 1), ("t1 zeroed", 0)):
            x = image.clone()
            if channel is not None:
                x[:, channel] = 0
            with torch.no_grad():
                scores[condition].append(dice(module.infer(x).argmax(1)[0].numpy(), label))
    return run, {k: float(np.mean(v)) for k, v in scores.items()}


def test_modality_dropout_keeps_the_dice_when_a_modality_is_missing(medvision_home: Path, tmp_path: Path) -> None:
    from medvision.inference.predict import predict

    _, plain = _dropout_run(medvision_home, tmp_path / "no_dropout", 0.0)
    run, dropout = _dropout_run(medvision_home, tmp_path / "dropout", 0.5)
    print(f"without dropout: {plain}\nmodality_dropout=0.5: {dropout}")
    assert plain["full"] > 0.8 and dropout["full"] > 0.8, (plain, dropout)
    assert plain["t2 zeroed"] < 0.8 * plain["full"], plain  # the net leans on t2, and never saw it missing
    assert dropout["t2 zeroed"] >= 0.8 * dropout["full"], dropout
    assert dropout["t1 zeroed"] >= 0.8 * dropout["full"], dropout

    # the same through medvision-predict: the test cases' CSV with the t2 cells empty
    root = Path(run.cfg.data.root)
    test_ids = json.loads((run.output_dir / "splits.json").read_text())["test"]
    rows = [[str(root / f"{c}_t1.nii.gz"), "", c] for c in test_ids]
    listed = write_manifest(tmp_path / "no_t2.csv", ["image_t1", "image_t2", "id"], rows)
    cfg = compose_in(
        medvision_home,
        tmp_path / "predict_run",
        [
            f"ckpt_path={run.best_ckpt}",
            f"input={listed}",
            f"output={tmp_path / 'no_t2'}",
            "missing_modalities=zero",
            "tta=none",
            "device=cpu",
        ],
        config_name="predict",
    )
    summary = predict(cfg)
    assert summary.exit_code == 0 and summary.filled == {c: ["t2"] for c in test_ids}
    predicted = np.mean(
        [
            dice(
                np.asarray(nib.load(tmp_path / "no_t2" / f"{c}.nii.gz").dataobj),
                np.asarray(nib.load(root / f"{c}_label.nii.gz").dataobj),
            )
            for c in test_ids
        ]
    )
    assert abs(predicted - dropout["t2 zeroed"]) < 0.02, (predicted, dropout)


# ----------------------------------------------------------------------------- units
def test_modality_dropout_zeroes_whole_channels_never_all_of_a_sample() -> None:
    from medvision.models.modality_dropout import drop_modalities

    image = torch.ones(4000, 3, 2, 2)
    torch.manual_seed(0)
    out = drop_modalities(image, 0.5)
    kept = out[:, :, 0, 0]
    assert set(torch.unique(out).tolist()) <= {0.0, 1.0}
    assert torch.equal(out, kept[:, :, None, None].expand_as(out))  # whole channels
    assert bool((kept.sum(1) >= 1).all())  # never every channel of a sample
    dropped = 1 - kept.mean().item()
    assert 0.40 < dropped < 0.5  # 0.5 per channel, less the rescued all-dropped samples (1/8 of them)
    torch.manual_seed(0)
    assert torch.equal(drop_modalities(image, 0.5), out)  # a function of the seed (reseeded every step)
    assert drop_modalities(image, 0.0) is image
    one = torch.ones(8, 1, 2, 2)
    assert torch.equal(drop_modalities(one, 0.9), one)  # a single channel is never dropped
    with pytest.raises(ValueError, match="modality_dropout"):
        drop_modalities(image, 1.0)


@pytest.mark.parametrize("fusion", ["mean", "concat"])
def test_late_fusion_unet_has_one_encoder_per_modality(fusion: str) -> None:
    from medvision.models.nets.late_fusion_unet import LateFusionUNet

    net = LateFusionUNet(in_channels=2, out_channels=3, spatial_dims=3, features=[8, 16, 32], fusion=fusion)
    assert len(net.encoders) == 2
    x = torch.randn(2, 2, 15, 16, 17, requires_grad=True)  # odd sizes are padded back by MONAI's UpCat
    out = net(x)
    assert out.shape == (2, 3, 15, 16, 17)
    out.sum().backward()
    for encoder in net.encoders:  # every modality's encoder is trained
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters() if p.ndim > 1)


def test_late_fusion_trains_on_two_modalities(compose_run) -> None:
    from medvision.train import run

    cfg = compose_run(
        [
            "experiment=multimodal_seg",
            "model/net=late_fusion_unet",
            "model.net.features=[8,16]",
            "data.source.num_cases=6",
            "data.source.size=16",
            "data.patch_size=[16,16,16]",
            "debug=fast_dev_run",
        ]
    )
    metrics = run(cfg)
    assert 0.0 <= metrics["test/dice_lesion"] <= 1.0
