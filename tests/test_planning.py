"""Self-configuration: ``medvision-plan`` prints the plan and writes an experiment that trains
unchanged; own data are planned by default; keys set on the command line win; the CT scheme is
exactly "clip to the foreground percentiles, then z-score".

The data: a small thick-slice CT-like set written here as real NIfTI files in MSD layout (HU
intensities, air at -1000, a bright "bone" label, in-plane ~1 mm and 3-4 mm slices), so the
anisotropic spacing rule and CT normalisation both apply.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import BIN, run_cli

CASES = 6


def write_ct_set(root: Path, cases: int = CASES, seed: int = 0) -> list[list[float]]:
    """Write the CT-like set; return each case's spacing (x, y, z) in mm."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    spacings, training = [], []
    for i in range(cases):
        inplane, slices = 0.9 + 0.04 * i, 3.0 + 0.25 * i
        shape = (44, 40, 12)
        x, y, _ = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
        body = ((x - 22) / 19) ** 2 + ((y - 20) / 17) ** 2 <= 1
        image = np.full(shape, -1000.0)
        image[body] = 40 + rng.normal(0, 12, body.sum())
        label = np.zeros(shape, np.uint8)
        for _ in range(3):
            cx, cy = rng.uniform(12, 32), rng.uniform(10, 30)
            bone = body & (((x - cx) ** 2 + (y - cy) ** 2) <= rng.uniform(9, 20))
            label[bone] = 1
            image[bone] = 700 + rng.normal(0, 40, bone.sum())
        affine = np.diag([inplane, inplane, slices, 1.0])
        nib.save(nib.Nifti1Image(image.astype(np.int16), affine), root / "imagesTr" / f"ct_{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"ct_{i}.nii.gz")
        training.append({"image": f"./imagesTr/ct_{i}.nii.gz", "label": f"./labelsTr/ct_{i}.nii.gz"})
        spacings.append([inplane, inplane, slices])
    manifest = {"name": "tiny_ct", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "bone"}}
    (root / "dataset.json").write_text(json.dumps({**manifest, "training": training}))
    return spacings


@pytest.fixture(scope="module")
def ct_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[float]]]:
    root = tmp_path_factory.mktemp("tiny_ct")
    return root, write_ct_set(root)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A console script (``args[0]``, its path) with the folder's ``home``; ``stdout`` has both streams."""
    return run_cli(Path(args[0]).name, args[1:], cwd, home=cwd / "home", timeout=900)


def _plan_rows(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("│")]


def test_plan_command_writes_an_experiment_that_trains_unchanged(tmp_path: Path, ct_set) -> None:
    root, spacings = ct_set
    home = tmp_path / "home"
    common = [f"data.root={root}", f"paths.root_dir={home}", "plan.time_budget=60s"]
    target = tmp_path / "my_conf" / "experiment" / "tinyct.yaml"
    first = _run([str(BIN / "medvision-plan"), "data=msd", *common, "--write", str(target)], tmp_path)
    assert first.returncode == 0, first.stdout[-3000:]
    out = first.stdout
    for choice in ("target spacing", "normalisation", "patch", "network", "schedule"):
        assert choice in out
    text = target.read_text()  # each choice's rule, on one line, above its keys
    assert "anisotropic" in text and "CT, clip to the foreground" in text
    assert f"--config-dir {target.parent.parent} experiment=tinyct" in out

    # the same plan again, from the cache (fingerprint and measured step time)
    again = _run([str(BIN / "medvision-plan"), "data=msd", *common], tmp_path)
    assert again.returncode == 0, again.stdout[-3000:]
    assert _plan_rows(again.stdout) == _plan_rows(out)

    written = yaml.safe_load(target.read_text())
    values = written["plan"]["values"]
    assert written["plan"]["mode"] == "fixed" and written["data"]["root"] == str(root)
    # nnU-Net's anisotropic rule: the thick axis gets its 10th-percentile spacing (of the planned cases)
    pixdim = values["data.transforms.pixdim"]
    assert pixdim[0] == pytest.approx(pixdim[1]) and pixdim[2] > 3 * pixdim[0]
    assert min(s[2] for s in spacings) <= pixdim[2] < float(np.median([s[2] for s in spacings]))
    assert values["data.transforms.load.intensity"]["_target_"] == "medvision.data.intensity.ClipZScored"

    run_dir = tmp_path / "run"
    train = _run(
        [
            str(BIN / "medvision-train"),
            "--config-dir",
            str(target.parent.parent),
            "experiment=tinyct",
            f"paths.root_dir={home}",
            f"hydra.run.dir={run_dir}",
            "print_config=false",
        ],
        tmp_path,
    )
    assert train.returncode == 0, train.stdout[-3000:]
    resolved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    assert resolved["data"]["transforms"]["pixdim"] == pixdim
    assert resolved["data"]["patch_size"] == values["data.patch_size"]
    assert resolved["trainer"]["max_epochs"] == values["trainer.max_epochs"]
    # the planned epoch count is re-fitted to the run's measured pace
    assert resolved["callbacks"]["budget_pace"]["_target_"].endswith("BudgetPace")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # bone is bright: a planned run of ~a minute finds it far above chance (its voxel share ~5%)
    assert metrics["test/dice_bone"] > 0.6
    splits = json.loads((run_dir / "splits.json").read_text())
    assert len(splits["train"]) + len(splits["val"]) + len(splits["test"]) == CASES


def test_keys_set_on_the_command_line_are_not_planned(tmp_path: Path, ct_set) -> None:
    root, _ = ct_set
    target = tmp_path / "conf" / "experiment" / "kept.yaml"
    done = _run(
        [
            str(BIN / "medvision-plan"),
            "data=msd",
            f"data.root={root}",
            f"paths.root_dir={tmp_path / 'home'}",
            "plan.time_budget=100s",
            "data.patch_size=[24,24,8]",
            "model/net=segresnet",
            "--write",
            str(target),
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    values = yaml.safe_load(target.read_text())["plan"]["values"]
    assert values["data.patch_size"] == [24, 24, 8]
    assert values["model.net"]["_target_"] == "monai.networks.nets.SegResNet"
    # a second --write to the same file is refused: nothing is overwritten
    refused = _run(
        [str(BIN / "medvision-plan"), "data=msd", f"data.root={root}", "--write", str(target)],
        tmp_path,
    )
    assert refused.returncode == 2 and "is not overwritten" in refused.stdout


def test_a_time_budget_that_is_no_duration_is_named(tmp_path: Path, ct_set) -> None:
    root, _ = ct_set
    done = _run(
        [
            str(BIN / "medvision-plan"),
            "data=msd",
            f"data.root={root}",
            f"paths.root_dir={tmp_path / 'home'}",
            "plan.time_budget=tenminutes",
        ],
        tmp_path,
    )
    assert done.returncode == 2
    assert "plan.time_budget='tenminutes'" in done.stdout and "10min" in done.stdout


def test_the_ct_scheme_is_clip_then_zscore() -> None:
    from hydra.utils import instantiate

    from medvision.planning.plan import intensity_transform
    from medvision.planning.rules import Normalisation

    low, high, mean, std = -50.0, 1200.0, 300.0, 250.0
    node = intensity_transform([Normalisation("ct", clip=(low, high), mean=mean, std=std)])
    transform = instantiate(node)
    hu = np.linspace(-1000, 2000, 301, dtype=np.float32)[None, None, None]
    got = np.asarray(transform({"image": hu})["image"])
    np.testing.assert_allclose(got, (np.clip(hu, low, high) - mean) / std, atol=1e-5)


def test_own_data_are_planned_by_default_and_the_demo_is_not() -> None:
    from medvision.utils.config import compose

    own = compose(["data=nnunet", "data.root=/nowhere"])
    demo = compose([])
    assert own.plan.mode == "auto"
    assert demo.get("plan") is None
    assert compose(["data=csv", "data.manifest=/nowhere.csv", "plan=none"]).plan.mode == "none"
