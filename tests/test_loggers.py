"""``logger=many``: CSV, TensorBoard and an offline W&B run are written for one short run."""

from __future__ import annotations

import csv
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import TINY_2D, train_in


def wandb_records(path: Path) -> Iterator[object]:
    """The protobuf records of a W&B ``run-*.wandb`` transaction log.

    wandb 0.31 writes no ``files/config.yaml`` offline: config, history and summary live only in
    this log (a LevelDB-style log: a 7-byte ``:W&B`` header, then 32 KiB blocks of chunks with a
    7-byte header ``crc32c:u32, length:u16, type:u8``; type 1 = full, 2/3/4 = first/middle/last).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # zero padding up to the block's end
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


@pytest.fixture(scope="module")
def many_loggers_run(medvision_home: Path, tmp_path_factory: pytest.TempPathFactory):
    return train_in(
        medvision_home,
        tmp_path_factory.mktemp("loggers") / "run",
        [*TINY_2D, "logger=many", "debug=limit", "seed=1234"],
    )


def test_run_writes_metrics_and_resolved_config(many_loggers_run) -> None:
    out = many_loggers_run.output_dir
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test/dice_mean"] == pytest.approx(many_loggers_run.metrics["test/dice_mean"], rel=1e-12)
    assert set(many_loggers_run.metrics) <= set(saved)
    resolved = yaml.safe_load((out / "config_resolved.yaml").read_text())
    assert resolved["seed"] == 1234
    assert resolved["paths"]["output_dir"] == str(out)
    assert "${" not in (out / "config_resolved.yaml").read_text(), "config_resolved.yaml must hold no interpolation"
    assert set(resolved["logger"]) == {"csv", "tensorboard", "wandb"}
    assert (out / "checkpoints" / "best.ckpt").is_file() and (out / "checkpoints" / "last.ckpt").is_file()


def test_csv_logger_writes_metrics_csv(many_loggers_run) -> None:
    path = many_loggers_run.output_dir / "csv" / "metrics.csv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and "val/dice_mean" in rows[0]
    vals = [float(r["val/dice_mean"]) for r in rows if r["val/dice_mean"]]
    assert vals and all(0.0 <= v <= 1.0 for v in vals)
    tests = [float(r["test/dice_mean"]) for r in rows if r.get("test/dice_mean")]
    assert tests == [pytest.approx(many_loggers_run.metrics["test/dice_mean"])]


def test_tensorboard_logger_writes_event_files(many_loggers_run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = many_loggers_run.output_dir / "tensorboard"
    events = sorted(folder.rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file under {folder}"
    tags: set[str] = set()
    for event in events:
        acc = EventAccumulator(str(event))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"val/dice_mean", "test/dice_mean"} <= tags, sorted(tags)


def test_wandb_logger_writes_an_offline_run_with_config_and_metrics(many_loggers_run) -> None:
    runs = sorted((many_loggers_run.output_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    logs = sorted(runs[0].glob("run-*.wandb"))
    assert len(logs) == 1 and logs[0].stat().st_size > 0
    assert (runs[0] / "files").is_dir()

    config: dict[str, object] = {}
    history: dict[str, float] = {}
    kinds: set[str] = set()
    for record in wandb_records(logs[0]):
        kind = record.WhichOneof("record_type")
        kinds.add(kind)
        if kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in record.config.update})
        if kind == "history":
            # wandb stores a key with "/" as a nested key ("val", "dice_mean")
            history.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        if kind == "run":
            assert record.run.project == "medvision"
    assert {"run", "config", "history", "exit"} <= kinds, sorted(kinds)
    # the resolved run config, seed included
    assert config["seed"] == 1234
    assert config["data"]["source"]["num_cases"] == 8
    assert config["model"]["optimizer"]["lr"] == pytest.approx(many_loggers_run.cfg.model.optimizer.lr)
    # and the metrics, the final test Dice being the one the run returned
    assert "val/dice_mean" in history
    assert history["test/dice_mean"] == pytest.approx(many_loggers_run.metrics["test/dice_mean"], rel=1e-6)
