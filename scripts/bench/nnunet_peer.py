"""nnU-Net v2 as a peer: its own planner (and a budget-shortened trainer) in a separate venv.

Issue 14 compares medvision's planner with nnU-Net v2's on the same datasets (point 1) and
medvision's planned training with nnU-Net's own at equal CPU wall time (point 4). nnU-Net is
not a dependency of medvision: it lives in its own venv (``.bench-venvs/nnunet``), and this script,
which needs only the standard library itself, drives it through nnU-Net's own console scripts.

Commands::

    python scripts/bench/nnunet_peer.py setup                   # venv + nnunetv2 2.8.x + dipy, CPU torch pinned
    python scripts/bench/nnunet_peer.py prepare NAME DEST       # NAME: mni152 | synthetic_ct | dipy_b0
    python scripts/bench/nnunet_peer.py convert MSD_DIR DEST    # any 3D single-channel MSD folder -> nnU-Net raw
    python scripts/bench/nnunet_peer.py plan RAW --json out.json  # fingerprint + plan, no preprocessing
    python scripts/bench/nnunet_peer.py train RAW --epochs 1 --iters 1  # preprocess + nnUNetTrainerBudget on CPU
    python scripts/bench/nnunet_peer.py predict RAW --cases ID ...  # predict on each case's own grid + Dice
    python scripts/bench/nnunet_peer.py all --raw /tmp/nnunet_raw --out /tmp/nnunet_plans

``prepare`` writes each dataset twice: an MSD folder (what ``data=msd data.root=...`` reads;
``mni152`` and ``synthetic_ct`` are written by medvision's own sources, so medvision and nnU-Net
see the same voxels) and the nnU-Net v2 raw folder ``DEST`` made from it (``dataset.json`` with
``channel_names``, ``labels`` name -> value, ``file_ending``; ``imagesTr/<case>_0000.nii.gz``,
``labelsTr/<case>.nii.gz``). ``mni152`` and ``synthetic_ct`` run in the project venv
(``.venv``), ``dipy_b0`` in the peer venv (dipy is installed there, not in the project).

Axes: nnU-Net reads NIfTI through SimpleITK, so its arrays, spacings and shapes are in
(k, j, i) order, the reverse of the file's voxel axes (i, j, k) that nibabel and MONAI's
``LoadImage`` use; its plans are then transposed by ``transpose_forward`` (the coarsest axis
first). ``plan`` writes every per-axis value both ways: as nnU-Net stores it and in file axes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: the peer venv (ignored by git: ``.bench-venvs/``)
DEFAULT_VENV = REPO / ".bench-venvs" / "nnunet"
#: the project venv, which writes the datasets that come from medvision's own sources
PROJECT_PYTHON = REPO / ".venv" / "bin" / "python"
NNUNET_SPEC = "nnunetv2==2.8.*"
#: the CPU wheel this machine has; any other torch pulls a multi-GB CUDA build (through torchvision)
TORCH_PIN = "torch==2.13.0"
#: dipy ships the real volume of the ``dipy_b0`` dataset (dipy/data/files/aniso_vox.nii.gz)
EXTRA_SPECS = ("dipy==1.12.*",)
TRAINER_SOURCE = Path(__file__).resolve().parent / "peers" / "nnunet_budget_trainer.py"
TRAINER_NAME = "nnUNetTrainerBudget"
STAMP = "medvision-peer.json"

#: name -> (nnU-Net dataset id, nnU-Net dataset name, channel name, MSD folder name)
DATASETS: dict[str, tuple[int, str, str, str]] = {
    "mni152": (901, "MNI152Tissue", "T1", "mni152_tissue"),
    "synthetic_ct": (902, "SyntheticCT", "CT", "synthetic_ct"),
    "dipy_b0": (903, "DipyB0Brain", "b0", "dipy_b0_brain"),
}


class PeerError(RuntimeError):
    """A user-facing failure: printed as one message, exit code 2."""


# ---------------------------------------------------------------------------------------------
# running commands: wall time and peak memory of the whole process tree


def _tree_rss_mb(root: int) -> float:
    """Resident memory (MiB) of ``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def run_measured(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> dict[str, Any]:
    """Run ``cmd``; return its exit code, wall seconds and peak process-tree RSS (sampled at 5 Hz).

    Output goes to ``log`` (appended) or is inherited.
    """
    out = open(log, "a") if log is not None else None  # noqa: SIM115 - closed below, after the process
    try:
        if out is not None:
            out.write(f"\n$ {' '.join(cmd)}\n")
            out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None)
        peak = [0.0]
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss_mb(proc.pid))
                done.wait(0.2)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        rc = proc.wait()
        done.set()
        thread.join()
        return {"cmd": cmd, "rc": rc, "wall_s": round(time.perf_counter() - start, 2), "peak_rss_mb": round(peak[0], 1)}
    finally:
        if out is not None:
            out.close()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# setup


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _stamp_wanted() -> dict[str, Any]:
    return {
        "nnunetv2": NNUNET_SPEC,
        "torch": TORCH_PIN,
        "extras": list(EXTRA_SPECS),
        "trainer_sha256": hashlib.sha256(TRAINER_SOURCE.read_bytes()).hexdigest(),
    }


_CHECK = r"""
import importlib.util, json, os, sys
import torch, nnunetv2, dipy
from importlib.metadata import version
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.training.nnUNetTrainer.nnUNetTrainerBudget import nnUNetTrainerBudget
tv = importlib.util.find_spec("torchvision") is not None
print(json.dumps({"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.cuda.is_available(),
                  "nnunetv2": version("nnunetv2"), "dipy": dipy.__version__,
                  "torchvision_installed": version("torchvision") if tv else None,
                  "torchvision_imported_by_planner": "torchvision" in sys.modules,
                  "nnunetv2_dir": os.path.dirname(nnunetv2.__file__)}))
"""


def _check_venv(venv: Path) -> dict[str, Any] | None:
    """The versions the peer venv imports, or ``None`` if it does not import."""
    if not venv_python(venv).is_file():
        return None
    res = subprocess.run([str(venv_python(venv)), "-c", _CHECK], capture_output=True, text=True)
    if res.returncode != 0:
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def _torchvision_imports(venv: Path) -> bool:
    res = subprocess.run([str(venv_python(venv)), "-c", "import torchvision"], capture_output=True, text=True)
    return res.returncode == 0


def _install_trainer(venv: Path) -> Path:
    """Copy the budget trainer directly into ``nnunetv2/training/nnUNetTrainer/`` of the venv."""
    res = subprocess.run(
        [str(venv_python(venv)), "-c", "import nnunetv2, os; print(os.path.dirname(nnunetv2.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    )
    dest = Path(res.stdout.strip()) / "training" / "nnUNetTrainer" / f"{TRAINER_NAME}.py"
    shutil.copyfile(TRAINER_SOURCE, dest)
    return dest


def setup(venv: Path = DEFAULT_VENV, force: bool = False) -> dict[str, Any]:
    """Create the peer venv with nnU-Net v2 and the CPU torch; a second call with nothing changed is a no-op.

    Args:
        venv: where the venv goes.
        force: reinstall even if the stamp says the venv is ready.

    Returns:
        The stamp: what was asked for, what imports, how long the install took.

    Raises:
        PeerError: pip could not install (no package index reachable, or no matching release).
    """
    wanted = _stamp_wanted()
    stamp_file = venv / STAMP
    if not force and stamp_file.is_file():
        stamp = json.loads(stamp_file.read_text())
        if stamp.get("wanted") == wanted and (found := _check_venv(venv)) is not None:
            print(f"peer venv ready: {venv} (nnunetv2 {found['nnunetv2']}, torch {found['torch']})")
            return stamp
    start = time.perf_counter()
    venv.mkdir(parents=True, exist_ok=True)
    log = venv / "setup.log"
    log.write_text("")
    if not venv_python(venv).is_file():
        res = run_measured([sys.executable, "-m", "venv", str(venv)], log=log)
        if res["rc"] != 0:
            raise PeerError(f"could not create a venv at {venv}:\n{_tail(log)}")
    constraints = venv / "constraints.txt"
    constraints.write_text(f"# pins the CPU torch wheel: anything else pulls a CUDA build\n{TORCH_PIN}\n")
    print(f"installing {NNUNET_SPEC} {' '.join(EXTRA_SPECS)} with {TORCH_PIN} into {venv} (log: {log}) ...")
    res = run_measured(
        [
            str(venv_python(venv)),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-c",
            str(constraints),
            NNUNET_SPEC,
            *EXTRA_SPECS,
        ],
        log=log,
    )
    if res["rc"] != 0:
        text = log.read_text(errors="replace")
        offline = re.search(
            r"NewConnectionError|Temporary failure in name resolution|Network is unreachable|"
            r"No matching distribution|Could not find a version|ConnectTimeout|ProxyError",
            text,
        )
        why = "the package index cannot be reached (offline?) or has no matching release" if offline else "pip failed"
        raise PeerError(
            f"setup: {why}; nothing usable was installed at {venv}.\n"
            f"fix: run `scripts/bench/nnunet_peer.py setup` on a machine that reaches PyPI (or the index in your "
            f"pip.conf); it needs {NNUNET_SPEC}, {' '.join(EXTRA_SPECS)} and {TORCH_PIN}.\n--- last lines of {log}:\n"
            f"{_tail(log)}"
        )
    trainer = _install_trainer(venv)
    found = _check_venv(venv)
    if found is None:
        raise PeerError(f"setup: nnunetv2 installed but does not import in {venv}; see {log}")
    if not found["torch"].startswith(TORCH_PIN.split("==")[1]) or found["cuda"]:
        raise PeerError(f"setup: the venv got torch {found['torch']} (cuda={found['cuda']}), not the CPU {TORCH_PIN}")
    stamp = {
        "wanted": wanted,
        "installed": found,
        "torchvision_imports": _torchvision_imports(venv),
        "trainer_file": str(trainer),
        "install_s": round(time.perf_counter() - start, 1),
    }
    stamp_file.write_text(json.dumps(stamp, indent=2) + "\n")
    print(f"peer venv ready in {stamp['install_s']} s: {venv}")
    facts = {**found, "torchvision_imports": stamp["torchvision_imports"], "trainer_file": str(trainer)}
    for key in (
        "python",
        "nnunetv2",
        "torch",
        "dipy",
        "torchvision_installed",
        "torchvision_imports",
        "torchvision_imported_by_planner",
        "trainer_file",
    ):
        print(f"  {key:32s} {facts[key]}")
    return stamp


def require_venv(venv: Path) -> Path:
    """The peer venv's python, or a clear error saying to run ``setup``."""
    if not (venv / STAMP).is_file() or not venv_python(venv).is_file():
        raise PeerError(f"no peer venv at {venv}; fix: run `python scripts/bench/nnunet_peer.py setup` first")
    return venv_python(venv)


# ---------------------------------------------------------------------------------------------
# NIfTI headers (stdlib: the orchestrator imports nothing outside the standard library)


def nifti_geometry(path: Path) -> tuple[list[int], list[float]]:
    """Shape and voxel size (file axes i, j, k) from a NIfTI-1 header (``.nii`` or ``.nii.gz``)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(348)
    endian = "<" if struct.unpack("<i", head[:4])[0] == 348 else ">"
    dim = struct.unpack(endian + "8h", head[40:56])
    pixdim = struct.unpack(endian + "8f", head[76:108])
    n = dim[0]
    return list(dim[1 : n + 1]), [round(float(v), 5) for v in pixdim[1 : n + 1]]


# ---------------------------------------------------------------------------------------------
# datasets: MSD folder -> nnU-Net v2 raw folder


def msd_to_nnunet(msd: Path, dest: Path, channel: str, dataset_name: str | None = None) -> dict[str, Any]:
    """Write the nnU-Net v2 raw folder ``dest`` from a 3D single-channel MSD folder (files are copied).

    Args:
        msd: folder with an MSD ``dataset.json`` (``labels`` value -> name, ``training`` list).
        dest: the nnU-Net raw dataset folder to write (replaced if it exists).
        channel: nnU-Net channel name; it selects the normalisation (``CT`` -> CTNormalization,
            most others -> ZScoreNormalization).
        dataset_name: ``name`` in the new ``dataset.json`` (default: the MSD name).

    Returns:
        The new ``dataset.json``.
    """
    manifest = json.loads((msd / "dataset.json").read_text())
    modalities = manifest.get("modality", {})
    if len(modalities) > 1:
        raise PeerError(f"{msd}: {len(modalities)} modalities; only single-channel MSD folders are converted here")
    if dest.exists():
        if not (dest / "dataset.json").is_file() and any(dest.iterdir()):
            raise PeerError(f"{dest} exists and is not a dataset folder; fix: choose an empty or new folder")
        shutil.rmtree(dest)
    (dest / "imagesTr").mkdir(parents=True)
    (dest / "labelsTr").mkdir()
    subjects = {}
    for entry in manifest["training"]:
        image, label = msd / entry["image"], msd / entry["label"]
        case = entry.get("id") or image.name.removesuffix(".nii.gz")
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", case):
            raise PeerError(f"{msd}: case id {case!r} is not a plain name nnU-Net accepts")
        shutil.copyfile(image, dest / "imagesTr" / f"{case}_0000.nii.gz")
        shutil.copyfile(label, dest / "labelsTr" / f"{case}.nii.gz")
        if "subject" in entry:
            subjects[case] = entry["subject"]
    new = {
        "name": dataset_name or manifest.get("name", dest.name),
        "channel_names": {"0": channel},
        "labels": {name: int(value) for value, name in sorted(manifest["labels"].items(), key=lambda kv: int(kv[0]))},
        "numTraining": len(manifest["training"]),
        "file_ending": ".nii.gz",
        "description": f"converted from the MSD folder {msd} by scripts/bench/nnunet_peer.py",
    }
    if subjects:
        # not read by nnU-Net: which cases are one subject (mirror blocks), for a grouped splits_final.json
        new["medvision_subjects"] = subjects
    (dest / "dataset.json").write_text(json.dumps(new, indent=2) + "\n")
    return new


def _medvision_python() -> str:
    """An interpreter that imports medvision: this one, else the project venv's."""
    res = subprocess.run([sys.executable, "-c", "import medvision"], capture_output=True, cwd=REPO)
    if res.returncode == 0:
        return sys.executable
    if PROJECT_PYTHON.is_file():
        return str(PROJECT_PYTHON)
    raise PeerError(
        f"cannot import medvision with {sys.executable} and there is no {PROJECT_PYTHON}; "
        "fix: install the project (`make install`) or run this with the project venv's python"
    )


def _write_medvision_source(name: str, msd: Path) -> None:
    """(In the project venv.) Prepare medvision's own source ``name`` as an MSD folder ``msd``."""
    sys.path.insert(0, str(REPO))
    from medvision.data.sources import prepare

    if name == "mni152":
        from medvision.data.sources.mni152 import MNI152Tissue

        source: Any = MNI152Tissue(resolution=2)  # conf/data/mni152_tissue.yaml
    elif name == "synthetic_ct":
        from medvision.data.sources.synthetic_ct import SyntheticCT

        source = SyntheticCT()
    else:
        raise PeerError(f"no medvision source named {name!r}")
    prepare(source, msd)


#: how ``dipy_b0`` is made; recorded in its ``peer_source.json``
DIPY_RECIPE = {
    "package": "dipy",
    "file": "dipy/data/files/aniso_vox.nii.gz (dipy.data.get_fnames('aniso_vox'))",
    "license": "BSD-3-Clause (dipy's LICENSE; the data files carry no other licence)",
    "label": "brain mask: dipy.segment.mask.median_otsu(volume, median_radius=2, numpass=1, finalize_mask=True) "
    "on the whole volume (median filter, Otsu threshold, largest component, holes filled), then cut",
    "cases": "8 blocks: halves of each voxel axis named by its anatomical direction; the two blocks that differ "
    "only left/right share a subject id",
}


def _write_dipy(msd: Path) -> None:
    """(In the peer venv.) The ``dipy_b0`` MSD folder: dipy's shipped b0 volume cut into 8 blocks with brain labels."""
    import dipy
    import nibabel as nib
    import numpy as np
    from dipy.data import get_fnames
    from dipy.segment.mask import median_otsu

    path = Path(get_fnames(name="aniso_vox"))
    img = nib.load(path)
    volume = np.asanyarray(img.dataobj)
    _, mask = median_otsu(volume.astype(np.float32), median_radius=2, numpass=1, finalize_mask=True)
    label = mask.astype(np.uint8)
    codes = nib.aff2axcodes(img.affine)  # direction each voxel axis points to, e.g. ('L', 'P', 'S')
    words = {"L": "left", "R": "right", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}
    opposite = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}
    halves = []
    for axis, n in enumerate(volume.shape):
        c = codes[axis]
        half = n // 2
        halves.append([(words[opposite[c]], slice(0, half)), (words[c], slice(n - half, n))])
    tmp = msd.parent / f".{msd.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "imagesTr").mkdir(parents=True)
    (tmp / "labelsTr").mkdir()
    order = {w: i for i, w in enumerate(("superior", "inferior", "anterior", "posterior", "left", "right"))}
    cases = []
    for hi, si in halves[0]:
        for hj, sj in halves[1]:
            for hk, sk in halves[2]:
                names = sorted([hi, hj, hk], key=lambda w: order[w])  # vertical, front/back, side
                case = "_".join(names)
                subject = "_".join(names[:2])
                affine = img.affine.copy()
                affine[:3, 3] = img.affine[:3, :3] @ np.array([si.start, sj.start, sk.start]) + img.affine[:3, 3]
                block = nib.Nifti1Image(np.ascontiguousarray(volume[si, sj, sk]), affine, img.header)
                block.set_qform(affine, code=1)
                block.set_sform(affine, code=1)
                seg = nib.Nifti1Image(np.ascontiguousarray(label[si, sj, sk]), affine)
                seg.set_qform(affine, code=1)
                seg.set_sform(affine, code=1)
                nib.save(block, tmp / "imagesTr" / f"{case}.nii.gz")
                nib.save(seg, tmp / "labelsTr" / f"{case}.nii.gz")
                cases.append(
                    {
                        "image": f"./imagesTr/{case}.nii.gz",
                        "label": f"./labelsTr/{case}.nii.gz",
                        "id": case,
                        "subject": subject,
                    }
                )
    manifest = {
        "name": "dipy_aniso_vox_b0_brain_blocks",
        "labels": {"0": "background", "1": "brain"},
        "modality": {"0": "b0"},
        "numTraining": len(cases),
        "training": cases,
        "test": [],
    }
    (tmp / "dataset.json").write_text(json.dumps(manifest, indent=2) + "\n")
    provenance = {
        **DIPY_RECIPE,
        "dipy_version": dipy.__version__,
        "source_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "source_shape": list(volume.shape),
        "source_dtype": str(volume.dtype),
        "source_voxel_mm": [round(float(z), 4) for z in img.header.get_zooms()[:3]],
        "source_axcodes": list(codes),
        "brain_voxels": int(label.sum()),
        "brain_fraction": round(float(label.mean()), 4),
    }
    (tmp / "peer_source.json").write_text(json.dumps(provenance, indent=2) + "\n")
    if msd.exists():
        shutil.rmtree(msd)
    os.rename(tmp, msd)


def prepare(name: str, dest: Path, msd: Path | None = None, venv: Path = DEFAULT_VENV) -> dict[str, Any]:
    """Write dataset ``name`` as an MSD folder and as the nnU-Net v2 raw folder ``dest``.

    Args:
        name: ``mni152``, ``synthetic_ct`` or ``dipy_b0``.
        dest: the nnU-Net raw dataset folder (best named ``DatasetXXX_Name``).
        msd: the MSD folder (default ``<dest parent>/msd/<name>``); reused if already prepared.
        venv: the peer venv (``dipy_b0`` is written there).

    Returns:
        A summary: folders, channel, labels, per-case shape and voxel size.
    """
    if name not in DATASETS:
        raise PeerError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    _, nn_name, channel, msd_name = DATASETS[name]
    msd = msd or dest.parent / "msd" / msd_name
    start = time.perf_counter()
    if not (msd / "dataset.json").is_file():
        msd.parent.mkdir(parents=True, exist_ok=True)
        python = str(require_venv(venv)) if name == "dipy_b0" else _medvision_python()
        worker = "_write-dipy" if name == "dipy_b0" else "_write-source"
        args = [python, str(Path(__file__).resolve()), worker, name, str(msd)]
        res = subprocess.run(args, cwd=msd.parent)
        if res.returncode != 0:
            raise PeerError(f"writing {name} into {msd} failed (exit {res.returncode}); see the output above")
    written_s = time.perf_counter() - start
    manifest = msd_to_nnunet(msd, dest, channel, dataset_name=nn_name)
    cases = []
    for image in sorted((dest / "imagesTr").glob("*_0000.nii.gz")):
        shape, spacing = nifti_geometry(image)
        cases.append({"case": image.name.removesuffix("_0000.nii.gz"), "shape_ijk": shape, "spacing_ijk": spacing})
    summary = {
        "name": name,
        "msd": str(msd),
        "nnunet_raw": str(dest),
        "channel_names": manifest["channel_names"],
        "labels": manifest["labels"],
        "num_cases": len(cases),
        "cases": cases,
        "prepare_s": round(time.perf_counter() - start, 1),
        "msd_write_s": round(written_s, 1),
    }
    print(f"{name}: {len(cases)} cases -> {dest} (MSD: {msd}), channel {channel!r}, labels {manifest['labels']}")
    print(f"  {'case':32s} {'shape (i,j,k)':18s} spacing mm (i,j,k)")
    for c in cases:
        print(f"  {c['case']:32s} {'x'.join(map(str, c['shape_ijk'])):18s} {c['spacing_ijk']}")
    return summary


# ---------------------------------------------------------------------------------------------
# planning


def _percentile(values: list[float], q: float) -> float:
    """numpy's default (linear) percentile."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def explain_target_spacing(
    spacings: list[list[float]], shapes: list[list[int]], threshold: float = 3.0
) -> dict[str, Any]:
    """Which branch of ``ExperimentPlanner.determine_fullres_target_spacing`` applies, recomputed from the fingerprint.

    Spacings and shapes are in nnU-Net's (SimpleITK, k-j-i) axis order, as in the fingerprint.
    """
    ndim = len(spacings[0])
    target = [_percentile([s[a] for s in spacings], 50) for a in range(ndim)]
    median_shape = [_percentile([s[a] for s in shapes], 50) for a in range(ndim)]
    worst = max(range(ndim), key=lambda a: (target[a], -a))  # np.argmax: the first of equal maxima
    others = [a for a in range(ndim) if a != worst]
    aniso_spacing = target[worst] > threshold * max(target[a] for a in others)
    aniso_voxels = median_shape[worst] * threshold < min(median_shape[a] for a in others)
    out: dict[str, Any] = {
        "median_spacing": target[:],
        "median_shape_after_crop": median_shape,
        "coarsest_axis": worst,
        "coarsest_file_axis": "ijk"[ndim - 1 - worst] if ndim == 3 else worst,
        "has_aniso_spacing": aniso_spacing,
        "has_aniso_voxels": aniso_voxels,
    }
    if aniso_spacing and aniso_voxels:
        p10 = _percentile([s[worst] for s in spacings], 10)
        floor = max(target[a] for a in others)
        target[worst] = max(floor, p10) + 1e-5 if p10 < floor else p10
        out["rule"] = (
            f"anisotropic: file axis {'ijk'[ndim - 1 - worst]} gets its 10th-percentile spacing ({p10:.4g} mm), "
            f"not the median ({out['median_spacing'][worst]:.4g} mm): its median spacing > {threshold}x the others' "
            f"and its median size < 1/{threshold} of theirs"
        )
    else:
        out["rule"] = "median spacing per axis" + (
            " (coarse axis spacing is anisotropic but it has enough voxels, so no 10th-percentile rule)"
            if aniso_spacing
            else ""
        )
    out["target_spacing"] = target
    return out


def _to_file_axes(values: list[Any] | None, transpose_forward: list[int]) -> list[Any] | None:
    """Values of the plan's axes (after ``transpose_forward`` of the k-j-i arrays) in file axes i, j, k.

    A 2D configuration's two values belong to the plan's axes 1 and 2; the file axis of plan
    axis 0 (the slice axis) gets ``None``.
    """
    if values is None:
        return None
    ndim = len(transpose_forward)
    axes = list(range(ndim))[ndim - len(values) :]
    out: list[Any] = [None] * ndim
    for p, v in zip(axes, values, strict=True):
        out[ndim - 1 - transpose_forward[p]] = v
    return out


def summarise_plans(plans: dict[str, Any], fingerprint: dict[str, Any], dataset_json: dict[str, Any]) -> dict[str, Any]:
    """The planner facts issue 14 compares, from nnU-Net's ``nnUNetPlans.json`` and ``dataset_fingerprint.json``."""
    tf = plans["transpose_forward"]
    channels = dataset_json["channel_names"]
    configs = {}
    for name, cfg in plans["configurations"].items():
        if "inherits_from" in cfg:
            configs[name] = {"inherits_from": cfg["inherits_from"], "previous_stage": cfg.get("previous_stage")}
            continue
        arch = cfg["architecture"]["arch_kwargs"]
        strides = [list(s) for s in arch["strides"]]
        kernels = [list(k) for k in arch["kernel_sizes"]]
        configs[name] = {
            "spacing": cfg["spacing"],
            "spacing_file_axes": _to_file_axes(cfg["spacing"], tf),
            "median_image_size_in_voxels": cfg["median_image_size_in_voxels"],
            "median_image_size_file_axes": _to_file_axes(cfg["median_image_size_in_voxels"], tf),
            "patch_size": cfg["patch_size"],
            "patch_size_file_axes": _to_file_axes(cfg["patch_size"], tf),
            "batch_size": cfg["batch_size"],
            "batch_dice": cfg.get("batch_dice"),
            "normalization_schemes": {channels[str(c)]: s for c, s in enumerate(cfg["normalization_schemes"])},
            "use_mask_for_norm": {channels[str(c)]: m for c, m in enumerate(cfg["use_mask_for_norm"])},
            "n_stages": arch["n_stages"],
            "features_per_stage": arch["features_per_stage"],
            "pool_op_kernel_sizes": strides,
            "pool_op_kernel_sizes_file_axes": [_to_file_axes(s, tf) for s in strides],
            "num_pool_per_axis": [sum(1 for s in strides if s[a] == 2) for a in range(len(strides[0]))],
            "conv_kernel_sizes": kernels,
            "conv_kernel_sizes_file_axes": [_to_file_axes(k, tf) for k in kernels],
            "n_conv_per_stage": arch["n_conv_per_stage"],
            "network_class": cfg["architecture"]["network_class_name"],
            "resampling_fn_data_kwargs": cfg.get("resampling_fn_data_kwargs"),
            "resampling_fn_seg_kwargs": cfg.get("resampling_fn_seg_kwargs"),
            "next_stage": cfg.get("next_stage"),
        }
    spacings, shapes = fingerprint["spacings"], fingerprint["shapes_after_crop"]
    props = fingerprint["foreground_intensity_properties_per_channel"]
    return {
        "axes": "nnU-Net arrays are SimpleITK's (k, j, i) = reversed file axes; plan values are then permuted by "
        "transpose_forward; *_file_axes fields are in the NIfTI voxel axes (i, j, k) nibabel/MONAI load",
        "transpose_forward": tf,
        "transpose_backward": plans["transpose_backward"],
        "original_median_spacing_after_transp": plans["original_median_spacing_after_transp"],
        "original_median_shape_after_transp": plans["original_median_shape_after_transp"],
        "image_reader_writer": plans["image_reader_writer"],
        "target_spacing_rule": explain_target_spacing(spacings, shapes),
        "fingerprint": {
            "num_cases": len(spacings),
            "spacings_kji": spacings,
            "shapes_after_crop_kji": shapes,
            "median_relative_size_after_cropping": fingerprint["median_relative_size_after_cropping"],
            "foreground_intensity_properties_per_channel": {channels[c]: v for c, v in props.items()},
        },
        "configurations": configs,
    }


def _peer_paths(
    venv: Path, raw: Path, dataset_id: int | None, work: Path | None
) -> tuple[Path, Path, Path, int, str, Path]:
    """The peer venv's python and bin folder, the raw folder, its dataset id and name, the work folder."""
    python = require_venv(venv)
    raw = raw.resolve()
    did, dname = _dataset_id_name(raw, dataset_id)
    return python, python.parent, raw, did, dname, (work or Path("/tmp/nnunet_peer") / dname).resolve()


def _dataset_id_name(raw: Path, dataset_id: int | None) -> tuple[int, str]:
    match = re.fullmatch(r"Dataset(\d{3})_(.+)", raw.name)
    if match:
        return int(match.group(1)), raw.name
    did = dataset_id if dataset_id is not None else 999
    return did, f"Dataset{did:03d}_{re.sub(r'[^A-Za-z0-9]', '', raw.name) or 'Peer'}"


def nnunet_env(work: Path, num_processes: int) -> dict[str, str]:
    """nnU-Net's folders under ``work`` and its process counts for this machine."""
    env = dict(os.environ)
    env.update(
        {
            "nnUNet_raw": str(work / "nnUNet_raw"),
            "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
            "nnUNet_results": str(work / "nnUNet_results"),
            "nnUNet_def_n_proc": str(num_processes),
            "nnUNet_n_proc_DA": str(num_processes),
            "PYTHONWARNINGS": "ignore",
        }
    )
    return env


def _link_raw(raw: Path, work: Path, dataset_name: str) -> None:
    link = work / "nnUNet_raw" / dataset_name
    link.parent.mkdir(parents=True, exist_ok=True)
    (work / "nnUNet_preprocessed").mkdir(exist_ok=True)
    (work / "nnUNet_results").mkdir(exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == raw.resolve():
            return
        if link.is_symlink():
            link.unlink()
        else:
            raise PeerError(f"{link} exists and is not a link to {raw}; fix: use another --work folder")
    link.symlink_to(raw.resolve(), target_is_directory=True)


def plan(
    raw: Path,
    out_json: Path | None = None,
    work: Path | None = None,
    venv: Path = DEFAULT_VENV,
    num_processes: int = 2,
    gpu_memory_target: float | None = None,
    dataset_id: int | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Run nnU-Net v2's fingerprint extraction and experiment planner (no preprocessing) on ``raw``.

    Args:
        raw: an nnU-Net v2 raw dataset folder.
        out_json: where the summary goes (also printed as a table).
        work: nnU-Net's raw/preprocessed/results folders (default ``/tmp/nnunet_peer/<name>``).
        venv: the peer venv.
        num_processes: nnU-Net's worker processes.
        gpu_memory_target: ``-gpu_memory_target`` in GB (nnU-Net's default planner: 8).
        dataset_id: id for a folder not named ``DatasetXXX_Name``.
        verify: run nnU-Net's ``--verify_dataset_integrity`` with the fingerprint.

    Returns:
        The summary written to ``out_json``.
    """
    python = require_venv(venv)
    bindir = python.parent
    raw = raw.resolve()
    if not (raw / "dataset.json").is_file():
        raise PeerError(f"{raw} has no dataset.json; fix: point at an nnU-Net v2 raw dataset folder")
    did, dname = _dataset_id_name(raw, dataset_id)
    work = (work or Path("/tmp/nnunet_peer") / dname).resolve()
    _link_raw(raw, work, dname)
    env = nnunet_env(work, num_processes)
    pre = work / "nnUNet_preprocessed" / dname
    (pre / "nnUNetPlans.json").unlink(missing_ok=True)  # nnU-Net merges old configurations into a new plans file
    log = work / "plan.log"
    log.write_text("")
    steps = {}
    fp_cmd = [
        str(bindir / "nnUNetv2_extract_fingerprint"),
        "-d",
        str(did),
        "-np",
        str(num_processes),
        "--clean",
        "--no_pbar",
    ]
    if verify:
        fp_cmd.append("--verify_dataset_integrity")
    steps["extract_fingerprint"] = run_measured(fp_cmd, env=env, log=log)
    if steps["extract_fingerprint"]["rc"] != 0:
        raise PeerError(f"nnUNetv2_extract_fingerprint failed on {raw}:\n{_tail(log)}")
    pl_cmd = [str(bindir / "nnUNetv2_plan_experiment"), "-d", str(did)]
    if gpu_memory_target is not None:
        pl_cmd += ["-gpu_memory_target", str(gpu_memory_target)]
    steps["plan_experiment"] = run_measured(pl_cmd, env=env, log=log)
    if steps["plan_experiment"]["rc"] != 0:
        raise PeerError(f"nnUNetv2_plan_experiment failed on {raw}:\n{_tail(log)}")
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    fingerprint = json.loads((pre / "dataset_fingerprint.json").read_text())
    dataset_json = json.loads((raw / "dataset.json").read_text())
    stamp = json.loads((venv / STAMP).read_text())
    summary = {
        "tool": "nnunetv2",
        "nnunetv2_version": stamp["installed"]["nnunetv2"],
        "torch_version": stamp["installed"]["torch"],
        "dataset": dname,
        "raw_folder": str(raw),
        "work_folder": str(work),
        "channel_names": dataset_json["channel_names"],
        "labels": dataset_json["labels"],
        "planner": plans.get("experiment_planner_used"),
        "gpu_memory_target_gb": gpu_memory_target if gpu_memory_target is not None else 8.0,
        "num_processes": num_processes,
        "steps": {
            k: {
                "cmd": " ".join(Path(v["cmd"][0]).name.split() + v["cmd"][1:]),
                "wall_s": v["wall_s"],
                "peak_rss_mb": v["peak_rss_mb"],
            }
            for k, v in steps.items()
        },
        "wall_s_total": round(sum(v["wall_s"] for v in steps.values()), 2),
        **summarise_plans(plans, fingerprint, dataset_json),
        "raw": {"nnUNetPlans": plans, "dataset_fingerprint": fingerprint},
    }
    check = summary["target_spacing_rule"]["target_spacing"]
    full = summary["configurations"].get("3d_fullres")
    if full is not None:
        planned = [full["spacing"][summary["transpose_backward"][a]] for a in range(3)]
        summary["target_spacing_rule"]["matches_plan"] = all(
            abs(a - b) < 1e-6 for a, b in zip(check, planned, strict=True)
        )
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(summary, indent=2) + "\n")
    print_plan_table([summary])
    return summary


def _fmt(values: list[Any] | None, digits: int = 3) -> str:
    if values is None:
        return "-"
    return "x".join("-" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) else str(v)) for v in values)


def print_plan_table(summaries: list[dict[str, Any]]) -> None:
    """One line per dataset and configuration; per-axis values in file axes (i, j, k)."""
    head = (
        f"{'dataset':24s} {'config':10s} {'spacing mm (ijk)':20s} {'patch (ijk)':14s} {'bs':>3s} "
        f"{'norm (mask)':26s} {'stages':>6s} {'pools/axis (ijk)':16s} {'plan s':>7s} {'peak MiB':>8s}"
    )
    print(head)
    print("-" * len(head))
    for s in summaries:
        wall = s["wall_s_total"]
        peak = max(v["peak_rss_mb"] for v in s["steps"].values())
        for name, c in s["configurations"].items():
            if "inherits_from" in c:
                continue
            norm = ", ".join(
                f"{v}({'m' if s_mask else '-'})"
                for (k, v), s_mask in zip(
                    c["normalization_schemes"].items(), c["use_mask_for_norm"].values(), strict=True
                )
            )
            pools = _to_file_axes(c["num_pool_per_axis"], s["transpose_forward"])
            print(
                f"{s['dataset']:24s} {name:10s} {_fmt(c['spacing_file_axes']):20s} "
                f"{_fmt(c['patch_size_file_axes']):14s} "
                f"{c['batch_size']:3d} {norm:26s} {c['n_stages']:6d} {_fmt(pools):16s} {wall:7.1f} {peak:8.0f}"
            )
        print(f"{'':24s} rule: {s['target_spacing_rule']['rule']}")


# ---------------------------------------------------------------------------------------------
# training (budget-shortened nnU-Net trainer on the CPU)


def train(
    raw: Path,
    work: Path | None = None,
    venv: Path = DEFAULT_VENV,
    configuration: str = "3d_fullres",
    fold: str = "0",
    epochs: int = 1,
    iters: int | str = 1,
    val_iters: int = 1,
    budget_s: float | None = None,
    splits: Path | None = None,
    skip_final_val: bool = False,
    num_processes: int = 2,
    dataset_id: int | None = None,
    out_json: Path | None = None,
    fit: bool = False,
) -> dict[str, Any]:
    """Preprocess ``configuration`` and train ``nnUNetTrainerBudget`` on the CPU (plans made by :func:`plan` first).

    Args:
        raw: the nnU-Net raw dataset folder.
        work: nnU-Net's folders (default as in :func:`plan`).
        venv: the peer venv.
        configuration: ``3d_fullres``, ``2d``, ...
        fold: the fold (an int or ``all``).
        epochs / iters / val_iters: ``nnUNet_budget_epochs`` / ``_iters`` / ``_val_iters``.
        budget_s: ``nnUNet_budget_seconds`` (stop before the epoch that would overrun it).
        splits: a ``splits_final.json`` to use (copied into the preprocessed folder).
        skip_final_val: skip nnU-Net's sliding-window validation of the fold's validation cases.
        num_processes: preprocessing and data augmentation workers.
        dataset_id: id for a folder not named ``DatasetXXX_Name``.
        out_json: where the summary goes.
        fit: ``nnUNet_budget_fit``: after two epochs, fit the epochs (and the poly schedule) to
            what is left of ``budget_s`` at the measured pace; ``epochs`` is then an upper bound.
    """
    _, bindir, raw, did, dname, work = _peer_paths(venv, raw, dataset_id, work)
    pre = work / "nnUNet_preprocessed" / dname
    if not (pre / "nnUNetPlans.json").is_file():
        plan(raw, work=work, venv=venv, num_processes=num_processes, dataset_id=dataset_id)
    if splits is not None:
        shutil.copyfile(splits, pre / "splits_final.json")
    env = nnunet_env(work, num_processes)
    env.update(
        {
            "nnUNet_budget_epochs": str(epochs),
            "nnUNet_budget_iters": str(iters),
            "nnUNet_budget_val_iters": str(val_iters),
            "nnUNet_budget_skip_final_val": "1" if skip_final_val else "0",
            "nnUNet_budget_fit": "1" if fit else "0",
            "nnUNet_compile": "false",
        }
    )
    if budget_s is not None:
        env["nnUNet_budget_seconds"] = str(budget_s)
    log = work / f"train_{configuration}_fold{fold}.log"
    log.write_text("")
    out = work / "nnUNet_results" / dname / f"{TRAINER_NAME}__nnUNetPlans__{configuration}" / f"fold_{fold}"
    summary: dict[str, Any] = {
        "dataset": dname,
        "configuration": configuration,
        "fold": fold,
        "trainer": TRAINER_NAME,
        "epochs": epochs,
        "iters_per_epoch": iters,
        "val_iters_per_epoch": val_iters,
        "budget_s": budget_s,
        "skip_final_val": skip_final_val,
        "fit": fit,
        "output_folder": str(out),
        "log": str(log),
        "steps": {},
    }
    commands = {
        "preprocess": [
            str(bindir / "nnUNetv2_preprocess"),
            "-d",
            str(did),
            "-c",
            configuration,
            "-np",
            str(num_processes),
        ],
        "train": [str(bindir / "nnUNetv2_train"), str(did), configuration, fold, "-tr", TRAINER_NAME, "-device", "cpu"],
    }
    failed = None
    for step, cmd in commands.items():
        res = run_measured(cmd, env=env, log=log)
        summary["steps"][step] = {k: res[k] for k in ("wall_s", "peak_rss_mb", "rc")}
        if res["rc"] != 0:
            failed = step
            break
    if (pre / "splits_final.json").is_file() and fold != "all":
        split = json.loads((pre / "splits_final.json").read_text())[int(fold)]
        summary["split"] = {"train": sorted(split["train"]), "val": sorted(split["val"])}
    val_summary = out / "validation" / "summary.json"
    if val_summary.is_file():
        vs = json.loads(val_summary.read_text())
        summary["validation"] = {"foreground_mean": vs.get("foreground_mean"), "mean": vs.get("mean")}
    logs = sorted(out.glob("training_log_*.txt"))
    if logs:
        text = logs[-1].read_text()
        summary["epoch_times_s"] = [float(m) for m in re.findall(r"Epoch time: ([0-9.]+) s", text)]
        fitted = re.findall(r"fitted to (\d+) epochs", text)
        summary["fitted_epochs"] = int(fitted[-1]) if fitted else None
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{'step':12s} {'wall s':>8s} {'peak MiB':>9s} {'rc':>3s}")
    for k, v in summary["steps"].items():
        print(f"{k:12s} {v['wall_s']:8.1f} {v['peak_rss_mb']:9.0f} {v['rc']:3d}")
    if "epoch_times_s" in summary:
        print(f"epoch times (s): {summary['epoch_times_s']}")
    if "validation" in summary:
        print(f"validation Dice (foreground mean): {summary['validation']['foreground_mean']}")
    if failed is not None:
        raise PeerError(f"nnUNetv2_{failed} failed (log {log}):\n{_tail(log)}")
    return summary


def predict(
    raw: Path,
    cases: list[str],
    work: Path | None = None,
    venv: Path = DEFAULT_VENV,
    configuration: str = "3d_fullres",
    fold: str = "0",
    tta: bool = True,
    checkpoint: str = "checkpoint_final.pth",
    dataset_id: int | None = None,
    out_json: Path | None = None,
) -> dict[str, Any]:
    """Predict ``cases`` of ``raw`` with the trained ``nnUNetTrainerBudget`` model and score them with nnU-Net.

    nnU-Net predicts on each case's own grid (it inverts its resampling and cropping), and
    ``nnUNetv2_evaluate_simple`` scores the files against the label files: the way issue 14
    wants test metrics computed.

    Args:
        raw: the nnU-Net raw dataset folder (the cases are its training cases, e.g. a held-out test split).
        cases: case ids (``imagesTr/<case>_0000.nii.gz``).
        work: nnU-Net's folders (as for :func:`train`).
        venv: the peer venv.
        configuration: the trained configuration.
        fold: the trained fold.
        tta: nnU-Net's mirroring test-time augmentation (its default; 8 flips in 3D).
        checkpoint: which checkpoint of the fold.
        dataset_id: id for a folder not named ``DatasetXXX_Name``.
        out_json: where the summary goes.
    """
    _, bindir, raw, did, dname, work = _peer_paths(venv, raw, dataset_id, work)
    dataset_json = json.loads((raw / "dataset.json").read_text())
    base = work / f"predict_{configuration}_fold{fold}"
    if base.exists():
        shutil.rmtree(base)
    for sub in ("input", "gt", "pred"):
        (base / sub).mkdir(parents=True)
    for case in cases:
        for image in sorted((raw / "imagesTr").glob(f"{case}_[0-9][0-9][0-9][0-9].nii.gz")):
            (base / "input" / image.name).symlink_to(image)
        label = raw / "labelsTr" / f"{case}.nii.gz"
        if not label.is_file():
            raise PeerError(f"{raw}: no case {case!r} (no {label})")
        (base / "gt" / label.name).symlink_to(label)
    env = nnunet_env(work, 1)
    log = base / "predict.log"
    cmd = [
        str(bindir / "nnUNetv2_predict"),
        "-i",
        str(base / "input"),
        "-o",
        str(base / "pred"),
        "-d",
        str(did),
        "-c",
        configuration,
        "-f",
        fold,
        "-tr",
        TRAINER_NAME,
        "-chk",
        checkpoint,
        "-device",
        "cpu",
        "-npp",
        "1",
        "-nps",
        "1",
        "--disable_progress_bar",
    ]
    if not tta:
        cmd.append("--disable_tta")
    steps = {"predict": run_measured(cmd, env=env, log=log)}
    if steps["predict"]["rc"] == 0:
        labels = [str(v) for v in sorted(set(dataset_json["labels"].values())) if v != 0]
        steps["evaluate"] = run_measured(
            [str(bindir / "nnUNetv2_evaluate_simple"), str(base / "gt"), str(base / "pred"), "-l", *labels, "-np", "1"],
            env=env,
            log=log,
        )
    summary: dict[str, Any] = {
        "dataset": dname,
        "configuration": configuration,
        "fold": fold,
        "cases": cases,
        "tta": tta,
        "checkpoint": checkpoint,
        "pred_folder": str(base / "pred"),
        "log": str(log),
        "steps": {k: {kk: v[kk] for kk in ("wall_s", "peak_rss_mb", "rc")} for k, v in steps.items()},
    }
    if (base / "pred" / "summary.json").is_file():
        res = json.loads((base / "pred" / "summary.json").read_text())
        names = {str(v): k for k, v in dataset_json["labels"].items()}
        summary["dice_per_class"] = {names.get(k, k): v["Dice"] for k, v in res["mean"].items()}
        summary["dice_foreground_mean"] = res["foreground_mean"]["Dice"]
        summary["dice_per_case"] = {
            Path(c["reference_file"]).name.removesuffix(".nii.gz"): {
                names.get(k, k): v["Dice"] for k, v in c["metrics"].items()
            }
            for c in res["metric_per_case"]
        }
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(summary, indent=2) + "\n")
    for k, v in summary["steps"].items():
        print(f"{k:12s} {v['wall_s']:8.1f} s {v['peak_rss_mb']:9.0f} MiB rc={v['rc']}")
    if "dice_per_class" in summary:
        print(f"Dice per class {summary['dice_per_class']}, foreground mean {summary['dice_foreground_mean']:.4f}")
    if any(v["rc"] != 0 for v in steps.values()):
        raise PeerError(f"nnU-Net prediction failed (log {log}):\n{_tail(log)}")
    return summary


# ---------------------------------------------------------------------------------------------
# CLI


def _cmd_all(args: argparse.Namespace) -> None:
    summaries = []
    for name, (did, nn_name, _, _) in DATASETS.items():
        if args.only and name not in args.only:
            continue
        dest = args.raw / f"Dataset{did:03d}_{nn_name}"
        prep = prepare(name, dest, venv=args.venv)
        summary = plan(
            dest,
            out_json=args.out / f"{name}.json",
            venv=args.venv,
            num_processes=args.np,
            gpu_memory_target=args.gpu_memory_target,
        )
        summary["prepare"] = prep
        (args.out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
        summaries.append(summary)
    print()
    print_plan_table(summaries)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command; a user error prints one message and returns 2."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"peer venv (default {DEFAULT_VENV})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{setup,prepare,convert,plan,train,predict,all}")
    p = sub.add_parser("setup", help="create the peer venv (idempotent)")
    p.add_argument("--force", action="store_true", help="reinstall even if ready")
    p = sub.add_parser("prepare", help="write a dataset as MSD + nnU-Net v2 raw folders")
    p.add_argument("name", choices=sorted(DATASETS))
    p.add_argument("dest", type=Path, help="nnU-Net raw dataset folder, e.g. /tmp/nnunet_raw/Dataset902_SyntheticCT")
    p.add_argument("--msd", type=Path, default=None, help="MSD folder (default <dest parent>/msd/<name>)")
    p.add_argument("--json", type=Path, default=None)
    p = sub.add_parser("convert", help="3D single-channel MSD folder -> nnU-Net v2 raw folder")
    p.add_argument("msd", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--channel", required=True, help="nnU-Net channel name (CT selects CT normalisation)")
    for name, helptext in (
        ("plan", "nnU-Net fingerprint + experiment planning (no preprocessing)"),
        ("train", "preprocess + budget-shortened nnU-Net training on the CPU"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("raw", type=Path, help="nnU-Net v2 raw dataset folder")
        p.add_argument("--json", type=Path, default=None, help="write the summary here")
        p.add_argument("--work", type=Path, default=None, help="nnU-Net work folder (default /tmp/nnunet_peer/<name>)")
        p.add_argument("--np", type=int, default=2, help="worker processes (default 2)")
        p.add_argument("--id", type=int, default=None, help="dataset id if the folder is not DatasetXXX_Name")
        if name == "plan":
            p.add_argument("--gpu-memory-target", type=float, default=None, help="GB (nnU-Net default 8)")
            p.add_argument("--no-verify", action="store_true", help="skip --verify_dataset_integrity")
        else:
            p.add_argument("--configuration", default="3d_fullres")
            p.add_argument("--fold", default="0")
            p.add_argument("--epochs", type=int, default=1)
            p.add_argument("--iters", default="1", help="iterations per epoch, or auto (needs --budget-s)")
            p.add_argument("--val-iters", type=int, default=1)
            p.add_argument("--budget-s", type=float, default=None, help="wall budget of the training loop")
            p.add_argument("--splits", type=Path, default=None, help="splits_final.json to use")
            p.add_argument("--skip-final-val", action="store_true")
            p.add_argument("--fit", action="store_true", help="fit the epochs to --budget-s at the measured pace")
    p = sub.add_parser("predict", help="predict cases with the trained budget model and score them (Dice)")
    p.add_argument("raw", type=Path, help="nnU-Net v2 raw dataset folder")
    p.add_argument("--cases", nargs="+", required=True, help="case ids from imagesTr/")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--id", type=int, default=None)
    p.add_argument("--configuration", default="3d_fullres")
    p.add_argument("--fold", default="0")
    p.add_argument("--no-tta", action="store_true", help="disable nnU-Net's mirroring TTA")
    p.add_argument("--checkpoint", default="checkpoint_final.pth")
    p = sub.add_parser("all", help="prepare and plan every dataset")
    p.add_argument("--raw", type=Path, default=Path("/tmp/nnunet_raw"))
    p.add_argument("--out", type=Path, default=Path("/tmp/nnunet_plans"))
    p.add_argument("--np", type=int, default=2)
    p.add_argument("--gpu-memory-target", type=float, default=None)
    p.add_argument("--only", nargs="*", choices=sorted(DATASETS), default=None)
    for worker in ("_write-source", "_write-dipy"):  # internal: run in the venv that has the libraries
        p = sub.add_parser(worker)
        p.add_argument("name")
        p.add_argument("msd", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "setup":
            setup(args.venv, force=args.force)
        elif args.command == "prepare":
            summary = prepare(args.name, args.dest, msd=args.msd, venv=args.venv)
            if args.json:
                args.json.write_text(json.dumps(summary, indent=2) + "\n")
        elif args.command == "convert":
            msd_to_nnunet(args.msd, args.dest, args.channel)
            print(f"{args.msd} -> {args.dest}")
        elif args.command == "plan":
            plan(
                args.raw,
                out_json=args.json,
                work=args.work,
                venv=args.venv,
                num_processes=args.np,
                gpu_memory_target=args.gpu_memory_target,
                dataset_id=args.id,
                verify=not args.no_verify,
            )
        elif args.command == "train":
            train(
                args.raw,
                work=args.work,
                venv=args.venv,
                configuration=args.configuration,
                fold=args.fold,
                epochs=args.epochs,
                iters=args.iters,
                val_iters=args.val_iters,
                budget_s=args.budget_s,
                splits=args.splits,
                skip_final_val=args.skip_final_val,
                num_processes=args.np,
                dataset_id=args.id,
                out_json=args.json,
                fit=args.fit,
            )
        elif args.command == "predict":
            predict(
                args.raw,
                args.cases,
                work=args.work,
                venv=args.venv,
                configuration=args.configuration,
                fold=args.fold,
                tta=not args.no_tta,
                checkpoint=args.checkpoint,
                dataset_id=args.id,
                out_json=args.json,
            )
        elif args.command == "all":
            _cmd_all(args)
        elif args.command == "_write-source":
            _write_medvision_source(args.name, args.msd)
        elif args.command == "_write-dipy":
            _write_dipy(args.msd)
    except PeerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
