"""The wheel ships the config tree, and an installed (non-editable) medvision finds it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

#: top-level folders that are not source (environments, outputs, build leftovers)
_NOT_SOURCE_AT_TOP = {
    ".git",
    ".venv",
    "build",
    "dist",
    "data",
    "logs",
    "outputs",
    "multirun",
    "wandb",
    ".pytest_cache",
    "notebooks",
    "tests",
}
_NOT_SOURCE_ANYWHERE = shutil.ignore_patterns("__pycache__", "*.egg-info")


def _not_source(folder: str, names: list[str]) -> set[str]:
    ignored = set(_NOT_SOURCE_ANYWHERE(folder, names))
    if Path(folder) == REPO:
        ignored |= _NOT_SOURCE_AT_TOP & set(names)
    return ignored


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel offline from a copy of the checkout (the work tree stays untouched)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=_not_source)
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    wheels = sorted((tmp / "dist").glob("medvision-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_ships_the_config_tree(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "medvision/conf/train.yaml",
        "medvision/conf/eval.yaml",
        "medvision/conf/experiment/mni152_tissue.yaml",
        "medvision/conf/model/net/unet.yaml",
        "medvision/conf/data/transforms/seg3d.yaml",
        "medvision/conf/hydra/default.yaml",
        "medvision/conf/paths/default.yaml",
    ):
        assert required in names, f"{required} is not in {wheel.name}"
    # every yaml of the checkout's conf/ is in the wheel
    for path in (REPO / "conf").rglob("*.yaml"):
        rel = path.relative_to(REPO / "conf").as_posix()
        if rel.startswith("local/"):
            continue  # machine-specific, git-ignored
        assert f"medvision/conf/{rel}" in names, f"conf/{rel} is not shipped"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "medvision-train = medvision.cli.train:main" in scripts
    assert "medvision-eval = medvision.cli.evaluate:main" in scripts


def test_installed_wheel_finds_its_config_tree(wheel: Path, tmp_path: Path) -> None:
    """Unpacked as site-packages would hold it, medvision composes from medvision/conf."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import medvision; from medvision.utils.config import config_dir, compose;"
        "print(medvision.__file__); print(config_dir());"
        "cfg = compose(['experiment=synthetic_seg3d', 'paths.root_dir=' + sys.argv[2]],"
        " output_dir=sys.argv[2] + '/out');"
        "print(cfg.data.source._target_)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(site), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    module, conf, target = proc.stdout.strip().splitlines()[-3:]
    assert Path(module).is_relative_to(site), module
    assert Path(conf) == site / "medvision" / "conf"
    assert target.endswith("SyntheticSegmentation")
