"""Benchmark 9: medvision's planned default vs nnU-Net v2 at equal CPU wall time (issue 14, point 4).

Per dataset and budget, both tools start from the same raw folder and the same split and are
timed from launch to a scored test prediction, everything included:

- **medvision**: ``medvision-train data=msd data.root=<MSD folder> plan.time_budget=<budget>``,
  nothing else (audit, fingerprint, plan, training, test on the label files' own grids). Its
  ``splits.json`` (the default split a user gets) becomes nnU-Net's ``splits_final.json``.
- **nnU-Net v2** (its separate venv, ``nnunet_peer.py setup``): fingerprint and plan
  (``nnUNetv2_plan_and_preprocess``'s planner, 3d_fullres), preprocessing, its own trainer with
  the number of epochs shortened to the budget (``nnUNetTrainerBudget``: nnU-Net's loss,
  augmentation, SGD + poly schedule and deep supervision; the epoch count fitted to the time left
  at the measured pace, as medvision's is, so its learning rate also anneals inside the budget;
  iterations per epoch sized to ~1/12 of the budget, so that the fit has epochs to work with), then ``nnUNetv2_predict``
  on the test cases with its default mirroring TTA and ``nnUNetv2_evaluate_simple`` for Dice.
  Its training gets the budget minus what its planning and preprocessing took, minus a reserve
  for prediction (``PREDICT_RESERVE``); its real total is reported, whatever it is.

nnU-Net uses its mirroring TTA; medvision uses its own (``tta=mirror``, the default since issue
15; rows measured before say "medvision no TTA"). Rows: mean foreground test Dice,
medvision / nnU-Net (goal >= 1), with both wall times, both plans and per-class Dice in the JSON.
Not in the default suite (it needs the peer venv and 20-70 minutes per dataset and budget):
``make bench BENCH_ARGS="--only 9 --merge --workdir /tmp/medvision-bench-9"``, or one dataset
at a time (same default workdir; a comparison finished there is reported again, not rerun)::

    python scripts/bench/nnunet_equal_time.py --dataset synthetic_ct --budget 10min --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import nnunet_peer

#: share of the budget nnU-Net's training leaves for its test prediction (8 flips of every tile:
#: about a minute per CT case on this 2-core CPU)
PREDICT_RESERVE = 0.25
#: nnU-Net iterations per epoch here (its default is 250, for days on a GPU): ``auto`` sizes an
#: epoch to ~1/12 of the budget from the pace of a one-iteration epoch 0
ITERS_PER_EPOCH = "auto"
#: thread pins of the suite's other rows, lifted for both tools here
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"datasets": ["mni152"], "budgets": ["3min"]},
    "full": {"datasets": ["synthetic_ct", "mni152"], "budgets": ["10min", "30min"]},
}


def _medvision_train() -> str:
    return str(Path(sys.executable).parent / "medvision-train")


def _mean_foreground(metrics: dict[str, float]) -> tuple[float, dict[str, float]]:
    per_class = {
        k.removeprefix("test/dice_"): float(v)
        for k, v in metrics.items()
        if k.startswith("test/dice_") and k != "test/dice_mean"
    }
    return float(metrics.get("test/dice_mean", sum(per_class.values()) / max(len(per_class), 1))), per_class


def run_medvision(msd: Path, budget: str, out: Path, env: dict[str, str]) -> dict[str, Any]:
    """``medvision-train`` on the MSD folder with only the budget set; its Dice, wall time, plan and split."""
    run_dir = out / "medvision"
    cmd = [
        _medvision_train(),
        "data=msd",
        f"data.root={msd}",
        f"plan.time_budget={budget}",
        f"paths.root_dir={out / 'home'}",
        f"hydra.run.dir={run_dir}",
        "print_config=false",
    ]
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with (out / "medvision.log").open("wb") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - start
    if rc != 0:
        raise RuntimeError(f"medvision-train failed (rc {rc}); see {out / 'medvision.log'}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    dice, per_class = _mean_foreground(metrics)
    plan = json.loads((run_dir / "plan.json").read_text())
    resolved = (run_dir / "config_resolved.yaml").read_text()
    tta = next((line.split(":", 1)[1].strip() for line in resolved.splitlines() if line.startswith("tta:")), "none")
    return {
        "wall_s": round(wall, 1),
        "tta": tta,
        "dice": dice,
        "dice_per_class": per_class,
        "plan": {c["name"]: c["value"] for c in plan["choices"]},
        "splits": json.loads((run_dir / "splits.json").read_text()),
        "command": " ".join(cmd[1:5]),
        "log": str(out / "medvision.log"),
    }


def run_nnunet(raw: Path, splits: dict[str, Any], budget_s: float, out: Path) -> dict[str, Any]:
    """nnU-Net v2 plan + preprocess + budget training + TTA prediction of the test cases, timed as one."""
    work = out / "nnunet"
    out.mkdir(parents=True, exist_ok=True)
    splits_file = out / "splits_final.json"
    splits_file.write_text(json.dumps([{"train": splits["train"], "val": splits["val"]}], indent=2) + "\n")
    start = time.perf_counter()
    planned = nnunet_peer.plan(raw, work=work, verify=False, out_json=out / "nnunet_plan.json")
    # preprocessing runs inside train(); the training clock gets what is left minus the reserve
    left = budget_s - (time.perf_counter() - start) - PREDICT_RESERVE * budget_s
    trained = nnunet_peer.train(
        raw,
        work=work,
        epochs=1000,
        iters=ITERS_PER_EPOCH,
        val_iters=1,
        budget_s=max(60.0, left - 30.0),  # 30 s: its preprocessing, measured on these sets at 10-25 s
        splits=splits_file,
        skip_final_val=True,
        fit=True,
        out_json=out / "nnunet_train.json",
    )
    predicted = nnunet_peer.predict(raw, splits["test"], work=work, tta=True, out_json=out / "nnunet_predict.json")
    wall = time.perf_counter() - start
    full = planned.get("configurations", {}).get("3d_fullres", {})
    return {
        "wall_s": round(wall, 1),
        "dice": float(predicted["dice_foreground_mean"]),
        "dice_per_class": predicted["dice_per_class"],
        "plan": {
            k: full.get(k)
            for k in ("patch_size_file_axes", "spacing_file_axes", "batch_size", "n_stages", "normalization_schemes")
        },
        "steps_s": {**trained["steps"], **predicted["steps"]},
        "epochs": len(trained.get("epoch_times_s", [])),
        "fitted_epochs": trained.get("fitted_epochs"),
        "epoch_times_s": trained.get("epoch_times_s", []),
    }


def compare(name: str, budget: str, workdir: Path) -> dict[str, Any]:
    """Both tools on dataset ``name`` with wall budget ``budget``; the figures of both."""
    from medvision.planning.budget import parse_duration

    did, nn_name, _, _ = nnunet_peer.DATASETS[name]
    base = workdir / "nnunet_equal_time"
    out = base / f"{name}_{budget}"
    if (out / "result.json").is_file():
        # 20+ minutes each: a finished comparison in this workdir is reported again, not rerun
        # (delete its folder to rerun it)
        print(f"{name} {budget}: reusing the finished comparison in {out}")
        return json.loads((out / "result.json").read_text())
    raw = base / "raw" / f"Dataset{did:03d}_{nn_name}"
    nnunet_peer.prepare(name, raw, msd=base / "msd" / name)
    # both tools use the whole machine as they would by default (rows 1-8 pin threads; not this one)
    pinned = {k: os.environ.pop(k) for k in THREAD_VARIABLES if k in os.environ}
    try:
        env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
        medvision = run_medvision((base / "msd" / name).resolve(), budget, out, env)
        nnunet = run_nnunet(raw, medvision["splits"], parse_duration(budget), out)
    finally:
        os.environ.update(pinned)
    result = {
        "dataset": name,
        "budget": budget,
        "test_cases": medvision["splits"]["test"],
        "train_cases": len(medvision["splits"]["train"]),
        "val_cases": len(medvision["splits"]["val"]),
        "medvision": {k: v for k, v in medvision.items() if k != "splits"},
        "nnunet": nnunet,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def row(result: dict[str, Any]) -> dict[str, Any]:
    mv, nn = result["medvision"], result["nnunet"]
    return harness.compare_row(
        "9",
        f"{result['dataset']}: test Dice at {result['budget']} of CPU wall time",
        "Dice",
        [mv["dice"]],
        [nn["dice"]],
        1.0,
        sides=("medvision", "nnU-Net v2"),
        note=(
            f"wall: medvision {mv['wall_s']:.0f} s, nnU-Net {nn['wall_s']:.0f} s (plan to scored test); "
            f"nnU-Net {nn['epochs']} epochs ({ITERS_PER_EPOCH} iterations each), mirroring TTA; "
            f"medvision {'mirroring TTA' if mv.get('tta') == 'mirror' else 'no TTA'}"
        ),
        extra=result,
    )


def run(ctx: harness.Context) -> list[dict[str, Any]]:
    """Rows: per dataset and budget, medvision's test Dice / nnU-Net's (goal >= 1)."""
    s = ctx.pick(SIZES)
    nnunet_peer.setup()
    rows = []
    for name in s["datasets"]:
        for budget in s["budgets"]:
            ctx.log(f"  {name}, {budget}: medvision planned, then nnU-Net v2 ...")
            result = compare(name, budget, ctx.workdir)
            mv, nn = result["medvision"], result["nnunet"]
            ctx.log(
                f"  {name} {budget}: medvision {mv['dice']:.4f} in {mv['wall_s']:.0f} s, "
                f"nnU-Net {nn['dice']:.4f} in {nn['wall_s']:.0f} s"
            )
            rows.append(row(result))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(nnunet_peer.DATASETS), required=True)
    parser.add_argument("--budget", default="10min", help="e.g. 10min, 30min")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/medvision-bench-9"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    nnunet_peer.setup()
    result = compare(args.dataset, args.budget, args.workdir.resolve())
    print(json.dumps({k: result[k] for k in ("dataset", "budget", "test_cases")}))
    for side in ("medvision", "nnunet"):
        r = result[side]
        print(f"{side:10s} Dice {r['dice']:.4f} {r['dice_per_class']} wall {r['wall_s']:.0f} s plan {r['plan']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
