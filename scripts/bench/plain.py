"""The plain side: what a researcher writes by hand with MONAI + PyTorch, no medvision.

MONAI transforms written out, ``CacheDataset`` + ``DataLoader``, a MONAI net, loss and a torch
optimiser, a ``for`` loop, ``sliding_window_inference``. :class:`SegSpec` holds the settings
once: :meth:`SegSpec.overrides` gives medvision the same settings as Hydra overrides, so both
sides of a comparison do identical work. The transforms mirror
``conf/data/transforms/seg3d.yaml`` with the MNI152 experiment's overrides
(``conf/data/mni152_tissue.yaml``); the smoke test checks both pipelines list the same steps.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

#: the MNI152 experiment's one global z-score (conf/data/mni152_tissue.yaml)
MNI_MEAN, MNI_STD = 0.693, 0.142


@dataclass
class SegSpec:
    """Settings shared by both sides of a segmentation comparison.

    Args:
        patch: training patch size.
        num_samples: patches sampled per volume (batch = ``batch_size * num_samples``).
        batch_size: volumes per batch.
        channels: U-Net channels per level.
        strides: U-Net strides.
        num_res_units: residual units per U-Net block.
        optimizer: ``adamw`` (medvision's default) or ``adam``.
        lr: learning rate.
        weight_decay: weight decay.
        neg: negative weight of the patch sampler (``pos`` is 1).
        augment: flips and the random affine of the default experiment (else the crop only).
        precision: ``32-true`` or ``bf16-mixed``.
        sw_batch_size: sliding-window batch size.
        overlap: sliding-window overlap.
    """

    patch: tuple[int, ...] = (48, 48, 48)
    num_samples: int = 4
    batch_size: int = 2
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 2
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 1e-5
    neg: float = 0.0
    augment: bool = True
    precision: str = "32-true"
    sw_batch_size: int = 4
    overlap: float = 0.25
    extra: list[str] = field(default_factory=list)

    def overrides(self) -> list[str]:
        """The Hydra overrides that make medvision's default experiment use these settings."""

        def seq(v: Sequence[Any]) -> str:
            return "[" + ",".join(str(x) for x in v) + "]"

        out = [
            f"data.patch_size={seq(self.patch)}",
            f"data.transforms.num_samples={self.num_samples}",
            f"data.batch_size={self.batch_size}",
            f"model.net.channels={seq(self.channels)}",
            f"model.net.strides={seq(self.strides)}",
            f"model.net.num_res_units={self.num_res_units}",
            f"model.optimizer.lr={self.lr}",
            f"model.optimizer.weight_decay={self.weight_decay}",
            f"data.transforms.augment.patch_sampler.neg={self.neg}",
            f"trainer.precision={self.precision}",
            f"model.inferer.sw_batch_size={self.sw_batch_size}",
            f"model.inferer.overlap={self.overlap}",
        ]
        if self.optimizer == "adam":
            out.append("model.optimizer._target_=torch.optim.Adam")
        if not self.augment:
            out += [f"data.transforms.augment.{k}=null" for k in ("flip_x", "flip_y", "flip_z", "affine")]
        return out + list(self.extra)


def load_transforms(spec: SegSpec) -> list[Callable]:
    """Deterministic preprocessing of the MNI152 blocks, written out by hand."""
    from monai import transforms as T

    keys = ["image", "label"]
    return [
        T.LoadImaged(keys, image_only=True),
        T.EnsureChannelFirstd(keys),
        T.Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        T.Spacingd(keys, pixdim=(2.0, 2.0, 2.0), mode=("bilinear", "nearest")),
        T.NormalizeIntensityd(["image"], subtrahend=[MNI_MEAN], divisor=[MNI_STD], nonzero=True, channel_wise=True),
        T.CropForegroundd(keys, source_key="image", allow_smaller=True),
        T.SpatialPadd(keys, spatial_size=spec.patch),
        # MONAI's way of not listing the patch-centre voxels for every patch (its fast-training tutorial)
        T.FgBgToIndicesd("label"),
        T.EnsureTyped(keys),
    ]


def augment_transforms(spec: SegSpec) -> list[Callable]:
    """Patch sampling and (with ``spec.augment``) flips and a random affine, by hand."""
    from monai import transforms as T

    keys = ["image", "label"]
    out: list[Callable] = [
        T.RandCropByPosNegLabeld(
            keys,
            label_key="label",
            spatial_size=spec.patch,
            pos=1,
            neg=spec.neg,
            num_samples=spec.num_samples,
            fg_indices_key="label_fg_indices",
            bg_indices_key="label_bg_indices",
        )
    ]
    if spec.augment:
        out += [T.RandFlipd(keys, spatial_axis=[axis], prob=0.5) for axis in range(3)]
        out.append(
            T.RandAffined(
                keys,
                mode=("bilinear", "nearest"),
                prob=0.2,
                rotate_range=(0.26,) * 3,
                scale_range=(0.1,) * 3,
                padding_mode="zeros",
            )
        )
    return out


def unet(spec: SegSpec, in_channels: int = 1, out_channels: int = 3) -> torch.nn.Module:
    """The MONAI U-Net of the spec."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=spec.channels,
        strides=spec.strides,
        num_res_units=spec.num_res_units,
    )


def optimiser(spec: SegSpec, params: Any) -> torch.optim.Optimizer:
    """Adam or AdamW with the spec's learning rate and weight decay."""
    cls = torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=spec.lr, weight_decay=spec.weight_decay)


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on the CPU for ``bf16-mixed``, nothing for ``32-true``."""
    if precision == "bf16-mixed":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class LoopLog:
    """What a plain training loop measured."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    fetch_s: list[float] = field(default_factory=list)
    val_points: list[tuple[float, float]] = field(default_factory=list)
    train_clock_s: float = 0.0


def train_loop(
    net: torch.nn.Module,
    loss_fn: Callable,
    opt: torch.optim.Optimizer,
    loader: Any,
    *,
    steps: int,
    precision: str = "32-true",
    scheduler: Any = None,
    validate: Callable[[], float] | None = None,
    val_every: int = 0,
    stop_dice: float | None = None,
    time_limit: float | None = None,
) -> LoopLog:
    """The hand-written training loop: epochs over ``loader`` until ``steps`` steps.

    With ``validate`` it runs every ``val_every`` steps on a clock that pauses during validation
    (as :class:`harness.StepTimer` does for medvision); it stops early at ``stop_dice`` or when
    that clock passes ``time_limit``.
    """
    log = LoopLog()
    step, val_time, t0 = 0, 0.0, time.perf_counter()
    done = False
    while not done:
        net.train()
        it = iter(loader)
        while True:
            f0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            log.fetch_s.append(time.perf_counter() - f0)
            log.starts.append(time.perf_counter())
            image, label = batch["image"].as_tensor(), batch["label"].as_tensor()
            opt.zero_grad(set_to_none=True)
            with autocast(precision):
                loss = loss_fn(net(image), label)
            loss.backward()
            opt.step()
            log.ends.append(time.perf_counter())
            log.sizes.append(int(image.shape[0]))
            step += 1
            clock = time.perf_counter() - t0 - val_time
            if validate is not None and val_every and step % val_every == 0:
                v0 = time.perf_counter()
                dice = validate()
                val_time += time.perf_counter() - v0
                log.val_points.append((clock, dice))
                net.train()
                if stop_dice is not None and dice >= stop_dice:
                    done = True
            if step >= steps or (time_limit is not None and clock > time_limit):
                done = True
            if done:
                break
        if scheduler is not None:
            scheduler.step()
    log.train_clock_s = time.perf_counter() - t0 - val_time
    return log


def sliding_window(net: torch.nn.Module, image: torch.Tensor, spec: SegSpec) -> torch.Tensor:
    """Whole-volume logits by MONAI's ``sliding_window_inference`` with the spec's settings."""
    from monai.inferers import sliding_window_inference

    return sliding_window_inference(
        image,
        roi_size=spec.patch,
        sw_batch_size=spec.sw_batch_size,
        predictor=net,
        overlap=spec.overlap,
        mode="gaussian",
    )


def dice_of(net: torch.nn.Module, loader: Any, spec: SegSpec, num_classes: int = 3) -> float:
    """Mean foreground Dice of ``loader``'s whole volumes (MONAI ``DiceMetric``, as medvision reports it)."""
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    metric = DiceMetric(include_background=False, reduction="mean_batch")
    net.eval()
    with torch.no_grad(), autocast(spec.precision):
        for batch in loader:
            image, label = batch["image"].as_tensor(), batch["label"].as_tensor()
            logits = sliding_window(net, image, spec)
            metric(one_hot(torch.argmax(logits, 1, keepdim=True), num_classes), one_hot(label.long(), num_classes))
    per_class = metric.aggregate().float()
    finite = per_class[torch.isfinite(per_class)]
    return float(finite.mean()) if finite.numel() else float("nan")
