"""Config validation against the targets' own signatures: unknown keys, wrong types, choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from medvision.utils.config import config_dir
from medvision.utils.errors import MedvisionError
from medvision.utils.validate import validate_config

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
NETS = sorted(p.stem for p in (config_dir() / "model" / "net").glob("*.yaml"))


def _problems(compose_run, overrides: list[str]) -> str:
    with pytest.raises(MedvisionError) as err:
        validate_config(compose_run(overrides))
    return str(err.value)


@pytest.mark.parametrize(
    "overrides",
    [[f"experiment={e}"] for e in EXPERIMENTS]
    + [[f"model/net={n}"] for n in NETS]
    + [
        ["logger=many", "trainer=gpu", "debug=limit"],
        ["data=msd", "data.root=/somewhere"],
        ["data=csv", "data.manifest=/somewhere/cases.csv"],
    ],
)
def test_every_shipped_config_validates(compose_run, overrides: list[str]) -> None:
    from medvision.utils.errors import MedvisionError

    cfg = compose_run(overrides)
    try:
        validate_config(cfg)
    except MedvisionError as err:  # a shipped config must validate cleanly
        pytest.fail(f"{overrides} does not validate: {err}")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["+data.bach_size=4"],
            [
                "data.bach_size",
                "VolumeDataModule has no parameter 'bach_size'",
                "did you mean batch_size?",
                "valid keys:",
                "on_invalid",
            ],
        ),
        (["data.batch_size=abc"], ["data.batch_size='abc': expected int"]),
        (["data.val_fraction=high"], ["data.val_fraction='high': expected float"]),
        (["data.batch_size=true"], ["data.batch_size=True: expected int"]),
        (["data.cache=ram"], ["data.cache='ram': expected one of 'none', 'memory', 'disk'"]),
        (["data.on_invalid=ignore"], ["data.on_invalid='ignore': expected one of 'error', 'skip'"]),
        (["data.loader=threads"], ["data.loader='threads': expected one of 'torch', 'thread'"]),
        (
            ["experiment=medmnist/resnet18_28", "data.flag=nosuchmnist"],
            ["data.flag='nosuchmnist': expected one of 'pathmnist', 'chestmnist'", "'synapsemnist3d'"],
        ),
        (["experiment=medmnist/resnet18_28", "data.size=100"], ["data.size=100: expected one of 28, 64, 128, 224"]),
        (["trainer.precision=fp8"], ["trainer.precision='fp8': expected one of", "'bf16-mixed'", "'32-true'"]),
        (["+trainer.max_epoch=3"], ["trainer.max_epoch", "did you mean max_epochs?"]),
        (["+model.net.chanels=[8,16]"], ["model.net.chanels", "UNet has no parameter", "did you mean channels?"]),
        (["model.net.channels=abc"], ["model.net.channels='abc': expected Sequence[int]"]),
        (
            ["+data.transforms.load.spacing.pixdims=[1,1,1]"],
            ["data.transforms.load.spacing.pixdims", "did you mean pixdim?"],
        ),
        (
            ["model.net._target_=monai.networks.nets.UNett"],
            ["model.net._target_: cannot import monai.networks.nets.UNett"],
        ),
        (["data=msd"], ["data.root is not set (???)"]),
    ],
)
def test_bad_values_are_named_with_what_is_expected(compose_run, overrides: list[str], expected: list[str]) -> None:
    message = _problems(compose_run, overrides)
    for text in expected:
        assert text in message, f"{text!r} not in:\n{message}"
    assert "fix:" in message


def test_every_problem_is_reported_at_once(compose_run) -> None:
    message = _problems(compose_run, ["data.batch_size=abc", "+data.bach_size=4", "trainer.max_epochs=2.5"])
    assert "4 problem(s)" in message  # max_epochs also reaches the scheduler's T_max
    for key in ("data.batch_size=", "data.bach_size", "trainer.max_epochs=2.5", "model.scheduler.T_max=2.5"):
        assert key in message


def test_run_validates_before_it_writes_anything(compose_run) -> None:
    from medvision.train import run

    cfg = compose_run(["+data.bach_size=4"], name="typo")
    with pytest.raises(MedvisionError) as err:
        run(cfg)
    assert "data.bach_size" in str(err.value)
    assert not (Path(cfg.paths.output_dir) / "config_resolved.yaml").exists()
