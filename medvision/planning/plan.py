"""A training plan from a dataset fingerprint and a budget: every choice, its value and its rule.

:func:`make_plan` decides the target spacing, normalisation, patch, network (MONAI ``DynUNet``
kernels, strides and filters), batch, foreground oversampling, steps per epoch, epochs and
validation interval. The data decide the first two (:mod:`medvision.planning.rules`); the
budget decides the rest: on a GPU with a day the plan is nnU-Net's (largest patch the memory
holds, 32 base filters); on a 2-core CPU with ten minutes it is one that finishes, with enough
optimiser steps to converge (:data:`MIN_STEPS`): the patch shrinks (the axis largest relative to
the median image first, as nnU-Net shrinks for memory) and the net narrows until a step is
fast enough.

The plan is a list of :class:`Choice` (config key, value, rule). :meth:`Plan.overrides` gives
the config keys to set; :mod:`medvision.planning.apply` sets those the user did not set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvision.data.fingerprint import DatasetFingerprint
from medvision.planning import budget as budgets
from medvision.planning import rules

#: training patches a plan aims to show the net at least (a short budget shrinks the patch and net
#: to get them): 1600 = 200 steps of 8 on a CPU, what the embedded demo's fixed default trains in
#: ten minutes on the 2-core reference machine
MIN_PATCHES = 1600
#: the most optimiser steps a plan uses (nnU-Net: 1000 epochs x 250 iterations)
MAX_STEPS = 250_000
#: patches per optimiser step: nnU-Net's batch of 2 on a GPU; on a CPU 2 cases x 4 patches (small
#: steps leave the cores idle: on the 2-core reference machine a step of 8 64^3 patches took 0.6 s,
#: one of 2 patches 48x40x32 0.375 s, a tenth of the voxel throughput)
PATCHES_PER_STEP = {"gpu": 2, "cpu": 8}
#: steps per epoch at most (nnU-Net's 250); smaller data make shorter epochs no shorter than the data
STEPS_PER_EPOCH = 250
#: bytes of training memory per feature-map element and sample (fp32 on CPU; measured: nnU-Net's
#: 192x192x48 CT plan took 10.25 GiB at batch 2 on this project's CPU machine), and with AMP
BYTES_PER_ELEMENT = {"fp32": 14.0, "mixed": 8.0}
#: the patch volume where a plan short of steps narrows the net before shrinking the patch further
NARROW_BELOW_VOXELS = {2: 256**2, 3: 96**3}
#: the starting patch volume (nnU-Net: 256^3 in 3D, 2048^2 in 2D)
START_VOXELS = {2: 2048**2, 3: 256**3}
#: seconds a run spends outside training and evaluation (imports, audit, loggers)
STARTUP_S = 25.0
#: a training step costs more than the net's own step: the patches' random augmentation (crops,
#: flips, affine) and Lightning's loop. Measured on the 2-core reference CPU in two planned
#: synthetic-CT runs: 1.67x (3.1 s a step against 1.86 s for the net alone) and 1.25x; the
#: run's ``trainer.max_time`` stops an underestimate
STEP_OVERHEAD = 1.4
#: share of the budget spent validating
VALIDATION_SHARE = 0.08
#: sliding-window overlap of validation and test (``model.inferer.overlap``)
OVERLAP = 0.25


@dataclass
class Choice:
    """One planned setting: the config key(s) it sets, its value, and why."""

    name: str
    value: Any
    rule: str
    keys: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """The choices of a plan, in the order they are made, and what they were made from."""

    dataset: str
    choices: list[Choice]
    budget: dict[str, Any]
    estimate: dict[str, float]

    def overrides(self) -> dict[str, Any]:
        """Config key -> value for every planned key."""
        out: dict[str, Any] = {}
        for choice in self.choices:
            out.update(choice.keys)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (written as the run's ``plan.json``)."""
        return {
            "dataset": self.dataset,
            "budget": self.budget,
            "estimate": self.estimate,
            "choices": [asdict(c) for c in self.choices],
            "overrides": self.overrides(),
        }

    def print(self) -> None:
        """Print :meth:`table` (160 columns wide when the output is no terminal: a log stays readable)."""
        from rich.console import Console

        console = Console()
        (console if console.is_terminal else Console(width=160)).print(self.table())

    def table(self) -> Any:
        """A rich table: choice, value, rule."""
        from rich.table import Table

        table = Table(title=f"plan for {self.dataset}", show_lines=False)
        table.add_column("choice", style="bold")
        table.add_column("value")
        table.add_column("rule", overflow="fold")
        for choice in self.choices:
            table.add_row(choice.name, _show(choice.value), choice.rule)
        return table


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], (list, tuple)):
            return " ".join("x".join(str(v) for v in row) for row in value)
        return "x".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def intensity_transform(norms: list[rules.Normalisation]) -> dict[str, Any] | None:
    """The MONAI dict transform of ``data.transforms.load.intensity`` for the channels' schemes.

    One scheme for all channels (per-channel statistics where the scheme has them): ``zscore``
    -> ``NormalizeIntensityd`` (``nonzero`` = use_mask, channel-wise); ``ct`` -> one
    :class:`medvision.data.intensity.ClipZScored` (clip to the percentiles, then z-score; MONAI's
    ``ScaleIntensityRanged`` computes the same in more passes); ``rescale`` -> ``ScaleIntensityd``
    to 0..1; ``rgb`` -> /255; ``none`` -> no step.
    Channels that need different schemes (a CT beside an MR, or several CT channels with their own
    statistics) -> :class:`medvision.data.multimodal.ChannelIntensityd` with the same step per
    channel, as a MONAI array transform.
    """
    schemes = {n.scheme for n in norms}
    if len(schemes) > 1 or (schemes == {"ct"} and len(norms) > 1) or len({n.use_mask for n in norms}) > 1:
        return {
            "_target_": "medvision.data.multimodal.ChannelIntensityd",
            "keys": ["image"],
            "channels": [_scheme_transform(n, None) for n in norms],
        }
    return _scheme_transform(norms[0], ["image"])


def _scheme_transform(norm: rules.Normalisation, keys: list[str] | None) -> dict[str, Any] | None:
    """One scheme's MONAI transform: the dict transform on ``keys``, or (``None``) the array transform."""
    target = "monai.transforms.{}d" if keys is not None else "monai.transforms.{}"
    step: dict[str, Any]
    if norm.scheme == "zscore":
        step = {"_target_": target.format("NormalizeIntensity"), "nonzero": norm.use_mask, "channel_wise": True}
    elif norm.scheme == "ct":
        assert norm.clip is not None and norm.mean is not None and norm.std is not None
        low, high = norm.clip
        step = {
            "_target_": "medvision.data.intensity.ClipZScore" + ("d" if keys is not None else ""),
            "low": low,
            "high": high,
            "mean": norm.mean,
            "std": norm.std,
        }
    elif norm.scheme == "rescale":
        step = {"_target_": target.format("ScaleIntensity"), "minv": 0.0, "maxv": 1.0}
    elif norm.scheme == "rgb":
        step = {"_target_": target.format("ScaleIntensity"), "minv": None, "factor": -1 + 1 / 255}
    else:
        return None
    return {"_target_": step.pop("_target_"), **({"keys": keys} if keys is not None else {}), **step}


def filters(base: int, stages: int) -> list[int]:
    """Features per stage: ``base * 2^s``, capped at 10x the base (nnU-Net: 32 ... 320)."""
    return [min(base * 2**s, 10 * base) for s in range(stages)]


#: the network families a plan chooses from
FAMILIES = ("dynunet", "unet")


def net_config(family: str, topo: rules.Topology, base: int, dims: int) -> dict[str, Any]:
    """The ``model.net`` node of a planned net (a partial MONAI network; in/out channels from the data).

    ``dynunet``: MONAI ``DynUNet`` (nnU-Net's architecture: two convolutions per stage at every
    resolution, full resolution included, per-stage kernels and strides). ``unet``: MONAI ``UNet``
    with the same per-axis strides, whose first convolution is strided: no full-resolution stage,
    several times cheaper per step, for budgets that cannot afford the former.
    """
    if family == "dynunet":
        return {
            "_target_": "monai.networks.nets.DynUNet",
            "_partial_": True,
            "spatial_dims": dims,
            "kernel_size": topo.kernel_size,
            "strides": topo.strides,
            "upsample_kernel_size": topo.strides[1:],
            "filters": filters(base, topo.stages),
            "res_block": True,
        }
    return {
        "_target_": "monai.networks.nets.UNet",
        "_partial_": True,
        "spatial_dims": dims,
        "channels": filters(base, topo.stages),
        "strides": topo.strides[1:],
        "num_res_units": 2,
    }


def _fitted(patch: list[float], spacing: list[float]) -> tuple[list[int], rules.Topology]:
    """The patch rounded to its net's divisibility, and that net."""
    topo = rules.topology(spacing, patch)
    if topo.stages < 3:  # DynUNet needs 3 stages: a tiny image is padded to 16 voxels per axis
        patch = [max(p, 16.0) for p in patch]
        topo = rules.topology(spacing, patch)
    rounded = rules.round_patch(patch, topo.divisor)
    return rounded, rules.topology(spacing, rounded)


@dataclass
class Candidate:
    """A net and patch a plan may choose."""

    family: str
    base: int
    patch: list[int]
    topo: rules.Topology
    why: str

    def feature_map(self) -> float:
        """Feature-map elements of one sample (what memory and step time grow with)."""
        fm = rules.feature_map_voxels(self.patch, self.topo, filters(self.base, self.topo.stages))
        if self.family == "unet":  # no full-resolution stage
            fm -= 4 * self.base * math.prod(self.patch)
        return fm


def candidates(
    spacing: list[float], median_shape: list[float], memory_gb: float, precision: str, patches: int = 2
) -> Iterator[Candidate]:
    """Nets and patches from the largest that fits the memory down, with why each step.

    For each family (``dynunet``, then ``unet``): start from nnU-Net's patch (``START_VOXELS``
    with the aspect of 1/spacing, clipped to the median image), drop below the memory, then (when
    the time budget asks for it) shrink the patch, narrowing the net from 32 to 16 base filters
    once the patch is below :data:`NARROW_BELOW_VOXELS`.
    """
    dims = len(spacing)
    per_element = BYTES_PER_ELEMENT["mixed" if "16" in str(precision) else "fp32"]
    for family in FAMILIES:
        patch, topo = _fitted(rules.initial_patch(spacing, median_shape, START_VOXELS[dims]), spacing)
        base = 32 if family == "dynunet" else 16
        why = "nnU-Net's start: aspect 1/spacing, clipped to the median image"
        while True:
            candidate = Candidate(family, base, patch, topo, why)
            fits = candidate.feature_map() * patches * per_element / 2**30 <= 0.85 * memory_gb
            if fits:
                yield candidate
            if base == 32 and math.prod(patch) <= NARROW_BELOW_VOXELS[dims] and fits:
                base, why = 16, f"{why}; 16 base filters (the patch is small: width goes before context)"
                continue
            axis = rules.shrink_axis(patch, median_shape, topo.divisor, spacing)
            if axis is None:
                if base == 32:
                    base, why = 16, f"{why}; 16 base filters"
                    continue
                if not fits:
                    yield Candidate(family, base, patch, topo, f"{why} (the smallest patch; over plan.memory_gb)")
                break
            shrunk = [float(p) for p in patch]
            shrunk[axis] -= topo.divisor[axis]
            patch, topo = _fitted(shrunk, spacing)
            why = f"shrunk for {'memory' if not fits else 'time'} (axis {axis} first: largest patch/median ratio)"


def _windows(median_shape: list[float], patch: list[int]) -> int:
    """Sliding-window tiles of a median image."""
    return int(
        math.prod(
            max(1, math.ceil((m - p) / (p * (1 - OVERLAP))) + 1) for m, p in zip(median_shape, patch, strict=True)
        )
    )


def make_plan(
    fp: DatasetFingerprint,
    num_train: int,
    num_val: int,
    num_test: int,
    time_budget: Any = "auto",
    memory_gb: Any = "auto",
    accelerator: str = "cpu",
    precision: str = "32-true",
    cache_dir: str | Path | None = None,
    min_patches: int = MIN_PATCHES,
    step_seconds: Callable[..., float] = budgets.step_seconds,
    test_passes: int = 1,
) -> Plan:
    """Plan training for the dataset ``fp`` within a budget.

    Args:
        fp: the dataset fingerprint (training and validation cases).
        num_train: training cases.
        num_val: validation cases.
        num_test: test cases.
        time_budget: wall time of the whole run (``plan.time_budget``).
        memory_gb: device memory (``plan.memory_gb``).
        accelerator: ``trainer.accelerator``.
        precision: ``trainer.precision``.
        cache_dir: where the measured step times are cached.
        min_patches: training patches the plan aims for at least.
        step_seconds: what times a net's training step (:func:`medvision.planning.budget.step_seconds`,
            same arguments); a benchmark planning for a GPU on a machine without one passes an estimate.
        test_passes: forward passes per test window (``tta=mirror``: 2 per mirrored axis, 8 in 3D).
    """
    gpu = budgets.uses_gpu(accelerator)
    seconds = budgets.parse_duration(time_budget, "gpu" if gpu else "cpu")
    memory = budgets.device_memory_gb(memory_gb, "gpu" if gpu else "cpu")
    choices: list[Choice] = []

    spacing, rule = rules.target_spacing(fp.spacings, fp.shapes_after_crop)
    choices.append(Choice("target spacing (mm)", spacing, rule, {"data.transforms.pixdim": spacing}))
    norms, rule = rules.normalisation(fp.modalities, fp.intensity, fp.median_relative_size)
    names = "/".join(n.scheme + ("+mask" if n.use_mask else "") for n in norms)
    choices.append(Choice("normalisation", names, rule, {"data.transforms.load.intensity": intensity_transform(norms)}))
    choices.append(
        Choice(
            "foreground crop",
            "nonzero",
            "crop each case to the box of its nonzero voxels (any channel), as nnU-Net does",
            {
                "data.transforms.load.crop_foreground.select_fn": {
                    "_target_": "hydra.utils.get_method",
                    "path": "medvision.data.transforms.nonzero",
                }
            },
        )
    )
    resampled = np.array(
        [np.array(c.shape_after_crop) * np.array(c.spacing) / np.array(spacing) for c in fp.cases], dtype=float
    )
    median_shape = [float(v) for v in np.median(resampled, axis=0)]
    dims = len(spacing)

    # time: per family, a reference step measured once (at its smallest candidate), scaled by
    # feature-map size to rank the candidates; the chosen one is then measured itself
    in_ch, out_ch = len(fp.modalities), len(fp.label_names)
    patches = PATCHES_PER_STEP["gpu" if gpu else "cpu"]
    min_steps = math.ceil(min_patches / patches)
    all_candidates = list(candidates(spacing, median_shape, memory, precision, patches))
    reference: dict[str, tuple[float, float]] = {}
    for family in FAMILIES:
        smallest = [c for c in all_candidates if c.family == family][-1]
        net = net_config(family, smallest.topo, smallest.base, dims)
        measured = step_seconds(in_ch, out_ch, smallest.patch, patches, net, gpu, cache_dir) * STEP_OVERHEAD
        reference[family] = (measured, smallest.feature_map())
    load_s = 2.0 * sum(c.seconds for c in fp.cases) * (num_train + num_val + num_test) / max(len(fp.cases), 1)

    def costs(patch: list[int], step_s: float) -> dict[str, float]:
        forward_s = step_s / STEP_OVERHEAD / patches / 3 * 4  # one sliding-window batch of 4 tiles, forward only
        windows = _windows(median_shape, patch)
        val_pass = num_val * math.ceil(windows / 4) * forward_s
        test_s = num_test * (math.ceil(windows / 4) * forward_s * test_passes + 2.0)
        passes = max(2, min(50, int(VALIDATION_SHARE * seconds / max(val_pass, 1e-3))))
        train_s = seconds - STARTUP_S - load_s - test_s - passes * val_pass
        return {"step_s": step_s, "val_pass_s": val_pass, "test_s": test_s, "val_passes": passes, "train_s": train_s}

    # the largest patch that affords the steps (context first, as nnU-Net); at equal patch DynUNet,
    # then the wider net
    ranked = sorted(all_candidates, key=lambda c: (-math.prod(c.patch), FAMILIES.index(c.family), -c.base))
    chosen = ranked[-1]
    why_time = "the smallest candidate (the budget allows fewer steps than aimed for)"
    measured_tries = 0
    for candidate in ranked:
        ref_s, ref_fm = reference[candidate.family]
        est = costs(candidate.patch, ref_s * candidate.feature_map() / ref_fm)
        if est["train_s"] / est["step_s"] < min_steps:
            continue
        # the scaled estimate ranks; the candidate's own measured step decides (a wider net costs
        # more than its feature maps say: convolutions grow with channels squared)
        net = net_config(candidate.family, candidate.topo, candidate.base, dims)
        own_s = step_seconds(in_ch, out_ch, candidate.patch, patches, net, gpu, cache_dir) * STEP_OVERHEAD
        measured_tries += 1
        if costs(candidate.patch, own_s)["train_s"] / own_s >= min_steps or measured_tries >= 4:
            chosen, why_time = candidate, f"{candidate.why}; fits >= {min_steps} steps in the budget"
            break
    patch, topo = chosen.patch, chosen.topo
    net = net_config(chosen.family, topo, chosen.base, dims)
    net_step_s = step_seconds(in_ch, out_ch, patch, patches, net, gpu, cache_dir)
    step_s = net_step_s * STEP_OVERHEAD
    est = costs(patch, step_s)
    steps = int(max(0.0, est["train_s"]) / step_s)
    steps = max(min(steps, MAX_STEPS), 1)
    cases_per_step = 2
    batch = patches
    per_epoch = max(math.ceil(num_train / cases_per_step), min(STEPS_PER_EPOCH, max(1, steps // 20)))
    epochs = max(1, steps // per_epoch)
    val_every = max(1, math.ceil(epochs / est["val_passes"]))

    choices.append(Choice("patch (voxels)", patch, why_time, {"data.patch_size": patch}))
    family_rule = (
        "nnU-Net's architecture: it affords the steps"
        if chosen.family == "dynunet"
        else f"DynUNet (full-resolution stages) affords < {min_steps} steps in this budget: MONAI UNet with the "
        "same per-axis strides (strided first convolution, several times cheaper per step)"
    )
    choices.append(
        Choice(
            "network",
            f"{'DynUNet' if chosen.family == 'dynunet' else 'UNet'}, {topo.stages} stages, "
            f"filters {filters(chosen.base, topo.stages)[0]}-{filters(chosen.base, topo.stages)[-1]}",
            f"{family_rule}; pool an axis while its map is >= {2 * rules.BOTTLENECK} voxels and its spacing "
            f"within 2x of the finest (pools per axis {topo.pools_per_axis})",
            {"model.net": net},
        )
    )
    if chosen.family == "dynunet":
        choices.append(Choice("kernels", topo.kernel_size, "per stage (3: within 2x of the finest spacing)", {}))
    choices.append(Choice("strides", topo.strides, "per stage (2: the axis is pooled)", {}))
    choices.append(
        Choice(
            "batch",
            f"{batch} patches ({cases_per_step} cases x {batch // cases_per_step})",
            ("nnU-Net's batch of 2" if gpu else "CPU: 8 patches a step use the cores (2 per step: 1/10 the throughput)")
            + "; half of the patches centred on foreground (nnU-Net: a third, over far more steps)",
            {
                "data.batch_size": cases_per_step,
                "data.transforms.num_samples": batch // cases_per_step,
                "data.transforms.augment.patch_sampler.pos": 1,
                "data.transforms.augment.patch_sampler.neg": 1,
            },
        )
    )
    coarse = int(np.argmax(spacing))
    if max(patch) / patch[coarse] > rules.ANISOTROPY and dims == 3:
        rotate = [0.0, 0.0, 0.0]
        rotate[coarse] = 3.14159
        choices.append(
            Choice(
                "rotation",
                f"in-plane only (about axis {coarse}), +-180 deg",
                f"the patch is > {rules.ANISOTROPY:g}x shorter along the thick-slice axis: rotate within slices "
                "(nnU-Net's 2D augmentation for anisotropic data)",
                {"data.transforms.augment.affine.rotate_range": rotate},
            )
        )
    time_rule = (
        f"{seconds / 60:.4g} min budget: {est['train_s']:.0f} s to train at {step_s:.3g} s/step (net "
        f"{net_step_s:.3g} s measured, x{STEP_OVERHEAD} for augmentation and the loop), "
        f"{est['val_passes']} validations of ~{est['val_pass_s']:.0f} s, test ~{est['test_s']:.0f} s"
        + (f" ({test_passes} TTA passes)" if test_passes > 1 else "")
        + ", "
        f"loading ~{load_s:.0f} s; after 2 epochs the epoch count (and the learning-rate schedule) is "
        "re-fitted to the measured pace (callbacks.budget_pace)"
    )
    choices.append(
        Choice(
            "schedule",
            f"{epochs} epochs x {per_epoch} steps",
            time_rule,
            {
                "data.samples_per_epoch": per_epoch * cases_per_step,
                "trainer.max_epochs": epochs,
                "trainer.check_val_every_n_epoch": val_every,
                "trainer.max_time": _clock(seconds - est["test_s"] - STARTUP_S),
                # the epoch count is re-fitted once to the pace the run really trains at
                "callbacks.budget_pace": {
                    "_target_": "medvision.callbacks.budget_pace.BudgetPace",
                    "val_pass_s": round(float(est["val_pass_s"]), 2),
                },
            },
        )
    )
    return Plan(
        dataset=fp.name,
        choices=choices,
        budget={"time_s": seconds, "memory_gb": round(memory, 2), "device": "gpu" if gpu else "cpu"},
        estimate={
            **{k: round(float(v), 3) for k, v in est.items()},
            "steps": steps,
            "load_s": round(load_s, 1),
            "median_resampled_shape": median_shape,  # type: ignore[dict-item]
        },
    )


def _clock(seconds: float) -> str:
    """Lightning's ``max_time`` ``DD:HH:MM:SS``."""
    s = max(60, int(seconds))
    return f"{s // 86400:02d}:{s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
