"""Run the benchmark suite (issue #7) and write ``BENCHMARKS.md`` and ``benchmarks.json``.

    python scripts/bench/run.py                      # the full suite (what `make bench` runs)
    python scripts/bench/run.py --only 1,2 --repeats 5
    python scripts/bench/run.py --size tiny --out-dir /tmp/bench   # the CI smoke: every path once

Benchmarks: 1 segmentation training throughput, 2 classification training throughput,
3 data wait per cache mode, 4 inference (time, peak memory), 5 CLI start-up, 6 DDP on CPU,
7 bf16 vs fp32, 8 time to quality (the plain loop at its best learning rate); at real sizes
(512x512x300 CT, issue #19): 10 read + preprocess vs nnU-Net v2 and MONAI, 11 training memory of
DDP ranks and workers per cache mode and data wait per ``num_workers``, 12 predicting one CT
within a memory budget. Each compares both sides alternately (A B A B) with identical work and
fixed threads, and reports medians and the ratio. 9 (medvision's planned default vs nnU-Net v2
at equal wall time) needs nnU-Net's separate venv and 20 minutes per dataset: it runs only when
named (``--only 9``); 10 makes that venv on first use (``scripts/bench/nnunet_peer.py setup``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

#: benchmark number -> module of this folder
BENCHMARKS: dict[str, str] = {
    "1": "seg_train",
    "2": "cls_train",
    "3": "data_wait",
    "4": "inference",
    "5": "startup",
    "6": "ddp",
    "7": "precision",
    "8": "time_to_quality",
    "9": "nnunet_equal_time",
    "10": "realsize_preprocess",
    "11": "realsize_train",
    "12": "large_predict",
}
#: run only when named in --only: they install and run a peer tool (scripts/bench/nnunet_peer.py)
PEER_BENCHMARKS = ("9",)
#: rounds per comparison where --repeats is not given (8 always runs one round)
DEFAULT_REPEATS = {"full": 3, "tiny": 1}
ROUNDS_CAP = {"1": 2, "2": 2, "8": 1, "3": 2, "4": 2, "6": 2, "7": 2, "10": 2, "11": 1, "12": 1}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="medvision benchmark suite vs a plain MONAI + PyTorch loop (issue #7)")
    p.add_argument("--size", choices=("tiny", "full"), default="full", help="tiny: every code path once (CI smoke)")
    p.add_argument("--only", default="", help="comma-separated benchmark numbers (default: all)")
    p.add_argument("--repeats", type=int, default=None, help="A-B rounds per comparison (default: 3 full, 1 tiny)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process (default 1)")
    p.add_argument("--workdir", type=Path, default=None, help="MEDVISION_HOME of the runs (default: a temp dir)")
    p.add_argument("--out-dir", type=Path, default=harness.REPO, help="where BENCHMARKS.md and benchmarks.json go")
    p.add_argument("--keep", action="store_true", help="keep the temp workdir")
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the other benchmarks' rows of the existing benchmarks.json (re-run one benchmark)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the selected benchmarks; write the report; return its rows."""
    args = parse(argv)
    start = time.perf_counter()
    harness.set_threads(args.threads)
    os.environ.setdefault("WANDB_MODE", "offline")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="medvision-bench-"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    repeats = args.repeats or DEFAULT_REPEATS[args.size]
    selected = [b.strip() for b in args.only.split(",") if b.strip()] or [
        b for b in BENCHMARKS if b not in PEER_BENCHMARKS
    ]
    unknown = [b for b in selected if b not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    facts = harness.machine_facts(args.threads) | {"size": args.size, "repeats": repeats}
    print(f"medvision bench: size={args.size} repeats={repeats} threads={args.threads} workdir={workdir}", flush=True)
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    try:
        for number in selected:
            module = importlib.import_module(BENCHMARKS[number])
            ctx = harness.Context(
                size=args.size,
                repeats=min(repeats, ROUNDS_CAP.get(number, repeats)),
                threads=args.threads,
                workdir=workdir,
                log=lambda line: print(line, flush=True),
            )
            t0 = time.perf_counter()
            print(f"[{number}] {module.__doc__.splitlines()[0]}", flush=True)
            try:
                new = module.run(ctx)
            except Exception as err:  # noqa: BLE001 - one broken benchmark must not lose the others' figures
                traceback.print_exc()
                failed.append(number)
                new = [
                    {
                        "bench": number,
                        "title": f"{BENCHMARKS[number]} FAILED",
                        "unit": "",
                        "a_name": "",
                        "b_name": "",
                        "a": None,
                        "b": None,
                        "ratio": None,
                        "goal": "runs",
                        "met": False,
                        "a_runs": [],
                        "b_runs": [],
                        "note": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                    }
                ]
            print(f"[{number}] done in {time.perf_counter() - t0:.0f} s", flush=True)
            rows += new
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    facts["load_average_end"] = os.getloadavg()[0]
    json_path = args.out_dir / "benchmarks.json"
    if args.merge and json_path.is_file():
        import json

        kept = [r for r in json.loads(json_path.read_text())["rows"] if r["bench"] not in selected]
        rows = sorted(kept + rows, key=lambda r: int(r["bench"]))  # stable: rows keep their order within a bench
        facts["merged"] = f"benchmarks {', '.join(sorted({r['bench'] for r in kept}))} kept from the previous run"
    elapsed = time.perf_counter() - start
    command = "python scripts/bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    harness.write_report(facts, rows, json_path, args.out_dir / "BENCHMARKS.md", command.strip(), elapsed)
    print(harness.markdown(facts, rows, command.strip(), elapsed), flush=True)
    if failed:
        raise SystemExit(f"benchmark(s) {', '.join(failed)} failed (see above); the report marks them")
    return rows


if __name__ == "__main__":
    main()
