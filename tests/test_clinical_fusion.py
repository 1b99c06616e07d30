"""Images + a patient's clinical record in one classifier (issue 17, the clinical part).

Real files (PNG images and CSV manifests written here or by the synthetic source), real short
Lightning runs through ``medvision.train.run``, real ``medvision-train``/``medvision-predict``
entry points:

- on the synthetic XOR task (label = bright blob XOR age > 60) fusion reaches test AUC >= 0.9 while
  the image-only and clinical-only networks, and the baselines, stay <= 0.75, for three seeds
  (training seed and data seed together), at the experiment's own size;
- permutation importance ranks the informative column (``age``) above the noise columns;
- Grad-CAM explains the image branch with the clinical vector fed;
- the standardisation is fitted on the training split only, stored in the checkpoint, and used at
  prediction, where missing values, non-numbers, unseen categories and absent columns give a
  prediction and a warning naming the case and the column;
- a clinical column constant or entirely missing in the training split is one clear error (exit 2).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import FinishedRun, train_in
from medvision.data.clinical import ClinicalDataModule, ClinicalEncoder
from medvision.data.sources import prepare
from medvision.data.sources.synthetic_fusion import SyntheticFusion
from medvision.utils.errors import USER_ERROR_EXIT_CODE, MedvisionError

SEEDS = (0, 1, 2)
INPUTS = ("both", "image", "clinical")
#: the experiment as it is (240 cases of 32x32, 20 epochs), quiet: no progress bar, summary or ROC figures
QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "callbacks.classification_plots=null"]
#: a tiny dataset for the runs that only need to run
TINY = ["data.source.num_cases=40", "data.source.size=16", "data.batch_size=8"]


def _run_args(seed: int, inputs: str) -> list[str]:
    args = ["experiment=clinical_fusion", f"seed={seed}", f"data.source.seed={seed}", f"model.inputs={inputs}", *QUIET]
    if not (seed == 0 and inputs == "both"):  # the pictures and the importance of one run are enough
        args += ["callbacks.gradcam=null", "callbacks.clinical_importance=null"]
    if inputs != "both":  # the baselines depend on the data only: once per seed
        args += ["callbacks.clinical_baselines=null"]
    return args


@pytest.fixture(scope="module")
def xor_runs(medvision_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, str], FinishedRun]:
    """The experiment for three seeds and each ``model.inputs``: 9 runs of 20 epochs on 240 cases."""
    root = tmp_path_factory.mktemp("xor")
    return {
        (seed, inputs): train_in(medvision_home, root / f"seed{seed}_{inputs}", _run_args(seed, inputs))
        for seed in SEEDS
        for inputs in INPUTS
    }


def test_only_fusion_solves_the_xor_task(xor_runs: dict[tuple[int, str], FinishedRun]) -> None:
    table = {seed: {inputs: xor_runs[seed, inputs].metrics["test/auc"] for inputs in INPUTS} for seed in SEEDS}
    baselines = {
        seed: {k: v for k, v in xor_runs[seed, "both"].metrics.items() if k.startswith("baseline/")} for seed in SEEDS
    }
    print(json.dumps({"test_auc": table, "baselines": baselines}, indent=1))
    for seed in SEEDS:
        assert table[seed]["both"] >= 0.9, (seed, table)
        assert table[seed]["image"] <= 0.75 and table[seed]["clinical"] <= 0.75, (seed, table)
        assert set(baselines[seed]) == {
            "baseline/clinical_lr/test_auc",
            "baseline/clinical_mlp/test_auc",
            "baseline/image_lr/test_auc",
        }
        assert all(v <= 0.75 for v in baselines[seed].values()), (seed, baselines)
        written = json.loads((xor_runs[seed, "both"].output_dir / "metrics.json").read_text())
        assert written["baseline/clinical_lr/test_auc"] == pytest.approx(
            baselines[seed]["baseline/clinical_lr/test_auc"]
        )


def test_permutation_importance_ranks_age_above_noise(xor_runs: dict[tuple[int, str], FinishedRun]) -> None:
    run = xor_runs[0, "both"]
    report = json.loads((run.output_dir / "clinical_importance.json").read_text())
    columns = report["columns"]
    assert set(columns) == {"age", "psa", "sex", "site"} and report["repeats"] == 5
    assert report["ranking"][0] == "age", report
    assert columns["age"]["mean"] > 0.2, columns
    assert columns["age"]["mean"] > max(columns[c]["mean"] for c in ("psa", "sex", "site")) + 0.15, columns
    assert report["test_auc"] == pytest.approx(run.metrics["test/auc"], abs=1e-4)
    assert run.metrics["importance/age"] == pytest.approx(columns["age"]["mean"])
    assert (run.output_dir / "clinical_importance.png").stat().st_size > 1000


def test_gradcam_explains_the_image_branch(xor_runs: dict[tuple[int, str], FinishedRun]) -> None:
    from monai.visualize import GradCAM

    from medvision.callbacks.gradcam import default_target_layer
    from medvision.models.loading import module_from_checkpoint

    run = xor_runs[0, "both"]
    pictures = sorted((run.output_dir / "gradcam").glob("*.png"))
    assert len(pictures) == 4, pictures
    module, _ = module_from_checkpoint(run.best_ckpt)
    layer = default_target_layer(module.net)
    assert layer == "image_encoders.0.layer4"
    # the map of one image depends on the record fed with it (FiLM): the clinical input reaches it
    image = torch.zeros(1, 1, 32, 32)
    image[..., 12:20, 12:20] = 0.9
    young = torch.zeros(1, len(module.clinical_features))
    old = young.clone()
    young[0, 0], old[0, 0] = -2.0, 2.0  # age, standardised
    cam = GradCAM(nn_module=module.net, target_layers=layer)
    maps = [cam(image, class_idx=1, clinical=c)[0, 0] for c in (young, old)]
    assert maps[0].shape == (32, 32) and not torch.allclose(maps[0], maps[1])


def test_the_checkpoint_keeps_the_training_split_statistics(xor_runs: dict[tuple[int, str], FinishedRun]) -> None:
    run = xor_runs[1, "both"]
    saved = torch.load(run.best_ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]["clinical"]
    rows = {r["id"]: r for r in _rows(Path(run.cfg.data.root, "cases.csv"))}
    train = json.loads((run.output_dir / "splits.json").read_text())["train"]
    ages = np.array([float(rows[case]["age"]) for case in train])
    assert saved["numeric"]["age"] == {"mean": pytest.approx(ages.mean()), "std": pytest.approx(ages.std())}
    everyone = np.array([float(r["age"]) for r in rows.values()])
    assert saved["numeric"]["age"]["mean"] != pytest.approx(everyone.mean())  # not the whole manifest's
    assert saved["categorical"] == {"sex": ["F", "M"], "site": ["A", "B", "C"]}
    assert saved["features"][:4] == ["age", "age:missing", "psa", "psa:missing"]


# ----------------------------------------------------------------------------- files written here
def _dataset(folder: Path, num_cases: int = 40, size: int = 16, seed: int = 0) -> Path:
    """A small synthetic image + clinical dataset: PNG files and ``cases.csv``."""
    prepare(SyntheticFusion(num_cases=num_cases, size=size, seed=seed), folder)
    return folder / "cases.csv"


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write(manifest: Path, rows: list[dict[str, str]]) -> Path:
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _datamodule(manifest: Path, **clinical: Any) -> ClinicalDataModule:
    from monai.transforms import EnsureTyped, LoadImaged

    spec = clinical or {"numeric": ["age", "psa"], "categorical": ["sex", "site"]}
    return ClinicalDataModule(
        manifest=str(manifest),
        clinical=spec,
        transforms={
            "load": [
                LoadImaged(keys=["image"], image_only=True, ensure_channel_first=True),
                EnsureTyped(keys=["image"]),
            ]
        },
        cache="none",
    )


def test_standardisation_is_fitted_on_the_training_split_only(tmp_path: Path) -> None:
    manifest = _dataset(tmp_path / "data")
    first = _datamodule(manifest)
    fitted = first.encoder
    split = first.split_indices
    rows = _rows(manifest)
    for i in split["val"] + split["test"]:  # other ages, other categories outside the training split
        rows[i]["age"], rows[i]["site"] = str(float(rows[i]["age"]) * 100 + 7), "Z"
    changed = _datamodule(_write(tmp_path / "data" / "changed.csv", rows))
    assert changed.split_indices == split
    assert changed.encoder == fitted and changed.encoder.categorical["site"] == ["A", "B", "C"]
    # the unseen category is no category (all-zero one-hot), the case still encoded
    site = changed.encoder.column_features()["site"]
    test_vectors = np.stack([s["clinical"] for s in changed.samples("test")])
    assert np.all(test_vectors[:, site] == 0)
    # ...while a training value does move the statistics (the comparison above can fail)
    rows[split["train"][0]]["age"] = "150"
    moved = _datamodule(_write(tmp_path / "data" / "moved.csv", rows)).encoder
    assert moved.numeric["age"][0] > fitted.numeric["age"][0]


def test_encoding_missing_values_and_unseen_categories() -> None:
    rows = [{"age": "50", "sex": "F"}, {"age": "70", "sex": "M"}, {"age": "NA", "sex": ""}]
    encoder = ClinicalEncoder.fit(rows[:2], ["age"], ["sex"], ids=["a", "b"])
    assert encoder.feature_names == ["age", "age:missing", "sex=F", "sex=M", "sex:missing"]
    x, notes = encoder.encode([*rows, {"age": "old", "sex": "X"}], ["a", "b", "c", "d"])
    assert x.tolist() == [
        [-1.0, 0.0, 1.0, 0.0, 0.0],
        [1.0, 0.0, 0.0, 1.0, 0.0],
        [0.0, 1.0, 0.0, 0.0, 1.0],  # missing: the mean (0) with the indicator set, never a bare 0
        [0.0, 1.0, 0.0, 0.0, 0.0],  # not a number -> missing; unseen category -> no category
    ]
    said = [str(n) for n in notes]
    assert [(n.case, n.column, n.problem) for n in notes] == [
        ("c", "age", "missing"),
        ("c", "sex", "missing"),
        ("d", "age", "not_a_number"),
        ("d", "sex", "unseen"),
    ]
    assert "case d: clinical column 'sex' has the category 'X', unseen in training" in said[3]
    assert ClinicalEncoder.from_dict(encoder.to_dict()) == encoder


@pytest.mark.parametrize(
    ("column", "values", "says"),
    [
        ("const", lambda i: "3.5", "is constant in the training split"),
        ("empty", lambda i: "", "is missing in every case"),
    ],
)
def test_a_constant_or_empty_training_column_is_a_clear_error(
    column: str, values: Any, says: str, tmp_path: Path, medvision_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _dataset(tmp_path / "data")
    rows = _rows(manifest)
    for i, row in enumerate(rows):
        row[column] = values(i)
    bad = _write(tmp_path / "data" / "bad.csv", rows)
    with pytest.raises(MedvisionError, match=f"clinical column '{column}' {says}") as raised:
        _datamodule(bad, numeric=["age", column]).encoder  # the property fits the encoder
    assert "data.clinical.numeric" in raised.value.fix
    # the same through medvision-train: one message, exit 2
    from medvision.cli.train import main

    argv = [
        "medvision-train",
        "data=clinical",
        "model=fusion",
        f"data.manifest={bad}",
        "data.clinical.categorical=[sex,site]",
        f"data.clinical.numeric=[age,{column}]",
        f"paths.root_dir={medvision_home}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "print_config=false",
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as stop:
            main()
    assert stop.value.code == USER_ERROR_EXIT_CODE
    err = capsys.readouterr().err
    assert "medvision error:" in err and f"clinical column '{column}'" in err and "Traceback" not in err


def _predict(argv: list[str]) -> tuple[int, str]:
    from medvision.cli.predict import main

    out = io.StringIO()
    code = 0
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
        mp.setattr(sys, "argv", ["medvision-predict", *argv])
        try:
            main()
        except SystemExit as stop:
            code = int(stop.code or 0)
    return code, out.getvalue()


def test_prediction_with_missing_and_unseen_values(
    xor_runs: dict[tuple[int, str], FinishedRun], tmp_path: Path
) -> None:
    run = xor_runs[0, "both"]
    rows = _rows(Path(run.cfg.data.root, "cases.csv"))[:5]
    for row in rows:
        row["image"] = str(Path(run.cfg.data.root, row["image"]))
        del row["label"]
    rows[0]["age"] = ""  # missing
    rows[1]["sex"], rows[1]["site"] = "NA", "Z"  # missing, unseen
    rows[2]["psa"] = "high"  # not a number
    new = _write(tmp_path / "new.csv", rows)
    code, said = _predict([f"ckpt_path={run.best_ckpt}", f"input={new}", f"output={tmp_path / 'pred'}", "device=cpu"])
    assert code == 0, said[-3000:]
    written = list(csv.DictReader((tmp_path / "pred" / "predictions.csv").open()))
    assert [r["case"] for r in written] == [r["id"] for r in rows]
    assert all(0.0 <= float(r["p_positive"]) <= 1.0 for r in written)
    said = " ".join(said.split())
    for case, column in (
        (rows[0]["id"], "age"),
        (rows[1]["id"], "sex"),
        (rows[1]["id"], "site"),
        (rows[2]["id"], "psa"),
    ):
        assert f"case {case}: clinical column '{column}'" in said, said[-3000:]
    assert "unseen in training" in said and "not a number" in said
    # a column the input lacks entirely: every case predicted, one warning
    for row in rows:
        del row["psa"]
    code, said = _predict(
        [f"ckpt_path={run.best_ckpt}", f"input={_write(tmp_path / 'nopsa.csv', rows)}", f"output={tmp_path / 'p2'}"]
    )
    assert code == 0 and "clinical column 'psa' is not a column of the input" in " ".join(said.split())
    assert len(list(csv.DictReader((tmp_path / "p2" / "predictions.csv").open()))) == 5
    # images alone are not enough for this model
    code, said = _predict([f"ckpt_path={run.best_ckpt}", f"input={rows[0]['image']}", f"output={tmp_path / 'p3'}"])
    assert code == USER_ERROR_EXIT_CODE and "input is a CSV of cases" in " ".join(said.split())


def test_late_fusion_of_two_modalities_and_clinical_only_run(compose_run, tmp_path: Path) -> None:
    from medvision.train import run

    variants = {
        "late": [
            "data.source.modalities=[ct,pet]",
            f"data.root={tmp_path / 'two_modalities'}",
            "model.modality_fusion=late",
            "model.fusion=concat",
        ],
        "clinical": ["model.inputs=clinical"],
    }
    for name, extra in variants.items():
        cfg = compose_run(["experiment=clinical_fusion", *TINY, *QUIET, "debug=fast_dev_run", *extra], name=name)
        metrics = run(cfg)
        assert 0.0 <= metrics["test/auc"] <= 1.0
        pictures = list((Path(cfg.paths.output_dir) / "gradcam").glob("*.png"))
        assert bool(pictures) == (name == "late"), pictures  # no image branch: no Grad-CAM, no error
    header = (tmp_path / "two_modalities" / "cases.csv").read_text().splitlines()[0]
    assert header.startswith("image_ct,image_pet,age")
