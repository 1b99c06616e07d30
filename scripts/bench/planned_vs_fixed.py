"""Planned default vs today's fixed default at the same wall time, on one dataset folder (issue 14, point 3).

    python scripts/bench/planned_vs_fixed.py DATA_ROOT [--format msd|nnunet] [--budget 10min]
        [--together] [--seeds 0 1 2] [--out DIR] [--json results.json]

Runs two real ``medvision-train`` commands on the same folder, split and seed:

- **planned**: ``data=<format> data.root=DATA_ROOT plan.time_budget=<budget>`` (what a user gets
  with no flag but the folder, the budget set explicitly);
- **fixed**: ``plan=none`` (the fixed data/model configs as written: 1 mm isotropic, 64^3
  patches, MONAI UNet 16-128, per-image z-score inside the nonzero mask), given the same wall
  time by hand: ``trainer.max_epochs=1000 +trainer.max_time=<the planned run's max_time>``.

Both are timed from launch to exit (set-up included) and their ``metrics.json`` test Dice (on the
label files' own grids) is printed beside the wall times, as a table and as JSON. ``--together``
runs both at once with one thread each (the same machine conditions for both; half the wall
time of running them one after the other with two threads each). ``--seeds`` repeats the pair
once per seed (``seed=<s>``: the same split, other initialisations and patches) and adds the
mean and sample standard deviation of each Dice over the seeds: on a test split of two small
cases, one seed's difference of a few thousandths is within the seed-to-seed spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _command(name: str, args: list[str], out: Path) -> list[str]:
    script = Path(sys.executable).parent / "medvision-train"
    return [str(script), *args, f"hydra.run.dir={out / name}", "print_config=false"]


def _max_time(budget: str) -> str:
    """The planned run's training cap for the budget (``trainer.max_time``), read from a composed plan."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from medvision.planning.budget import parse_duration
    from medvision.planning.plan import STARTUP_S

    seconds = int(parse_duration(budget) - STARTUP_S)
    return f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _pair(args: argparse.Namespace, out: Path, seed: int | None) -> dict[str, dict[str, float]]:
    """The planned and the fixed run of one seed (``None``: the configs' own seed); name -> figures."""
    suffix = "" if seed is None else f"_seed{seed}"
    common = [f"data={args.format}", f"data.root={Path(args.root).resolve()}", f"paths.root_dir={out}"]
    if seed is not None:
        common.append(f"seed={seed}")
    runs = {
        f"planned{suffix}": _command(f"planned{suffix}", [*common, f"plan.time_budget={args.budget}"], out),
        f"fixed{suffix}": _command(
            f"fixed{suffix}",
            [*common, "plan=none", "trainer.max_epochs=1000", f"+trainer.max_time={_max_time(args.budget)}"],
            out,
        ),
    }
    env = dict(os.environ, OMP_NUM_THREADS="1") if args.together else dict(os.environ)
    results: dict[str, dict[str, float]] = {}
    started: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
    for name, command in runs.items():
        log = (out / f"{name}.log").open("wb")
        started[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), time.time())
        if not args.together:
            proc, t0 = started[name]
            proc.wait()
            results[name] = {"wall_s": round(time.time() - t0, 1), "rc": proc.returncode}
    for name, (proc, t0) in started.items():
        if name not in results:
            proc.wait()
            results[name] = {"wall_s": round(time.time() - t0, 1), "rc": proc.returncode}
    for name in runs:
        metrics_file = out / name / "metrics.json"
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            results[name].update({k: v for k, v in metrics.items() if k.startswith("test/dice")})
    return results


def _seed_summary(results: dict[str, dict[str, float]], seeds: list[int | None]) -> dict[str, dict[str, float]]:
    """``planned (mean of n seeds)`` / ``... (sd)`` rows: each Dice and wall time over the seeds."""
    summary: dict[str, dict[str, float]] = {}
    for kind in ("planned", "fixed"):
        rows = [results[f"{kind}_seed{s}"] for s in seeds if f"{kind}_seed{s}" in results]
        keys = sorted({k for r in rows for k in r if k.startswith("test/dice") or k == "wall_s"})
        mean: dict[str, float] = {"rc": max(int(r["rc"]) for r in rows)}
        sd: dict[str, float] = {"rc": mean["rc"]}
        for key in keys:
            values = [float(r[key]) for r in rows if key in r]
            mean[key] = round(statistics.fmean(values), 4 if key != "wall_s" else 1)
            sd[key] = round(statistics.stdev(values), 4 if key != "wall_s" else 1) if len(values) > 1 else 0.0
        summary[f"{kind} (mean of {len(rows)} seeds)"] = mean
        summary[f"{kind} (sd)"] = sd
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="dataset folder (MSD or nnU-Net v2 raw)")
    parser.add_argument("--format", default="msd", choices=["msd", "nnunet"])
    parser.add_argument("--budget", default="10min")
    parser.add_argument("--together", action="store_true", help="run both at once, one thread each")
    parser.add_argument("--out", default="/tmp/planned_vs_fixed")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="one pair of runs per seed")
    args = parser.parse_args()
    out = Path(args.out) / Path(args.root).name
    out.mkdir(parents=True, exist_ok=True)
    seeds: list[int | None] = list(args.seeds) if args.seeds else [None]
    results: dict[str, dict[str, float]] = {}
    for seed in seeds:
        results.update(_pair(args, out, seed))
    if args.seeds:
        results.update(_seed_summary(results, seeds))
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{Path(args.root).name}: planned vs fixed default, same wall time ({args.budget})")
    keys = sorted({k for r in results.values() for k in r if k.startswith("test/dice")})
    for column in ("run", "wall time (s)", *keys):
        table.add_column(column)
    for name, r in results.items():
        table.add_row(name, str(r["wall_s"]), *(f"{r[k]:.4f}" if k in r else "-" for k in keys))
    Console().print(table)
    payload = {"dataset": str(args.root), "budget": args.budget, "together": args.together, "runs": results}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload))
    return 0 if all(r["rc"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
