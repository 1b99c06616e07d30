"""Benchmark 2: training throughput of 2D classification on 28x28 MedMNIST-format arrays.

Short steps, so the per-step cost of the framework shows most. The data are a PathMNIST-format
``.npz`` written here (official keys, uint8 (N, 28, 28, 3) images, (N, 1) labels; the pixel
values are random: throughput does not depend on them), one epoch long enough for every step,
so no epoch end (checkpoint) falls inside the timed steps. medvision: the MedMNIST v2
experiment ``medmnist/resnet18_28`` (Adam 1e-3, batch 128) with ``data.cache=memory``,
validation off, and ResNet-18's standard stem (7x7 stride 2 + max-pool) instead of the 28-px
protocol's stride-1 stem: a step then takes ~0.1-0.3 s rather than several seconds, which is
where per-step framework cost shows. Plain: the same MONAI ResNet-18, cross-entropy, Adam,
``CacheDataset`` of the same transforms, batch size and steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import harness

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"batch": 4, "steps": 3, "warmup": 1, "depth": 10},
    "full": {"batch": 128, "steps": 24, "warmup": 4, "depth": 18},
}
CLASSES = 9  # PathMNIST


def write_npz(root: Path, n_train: int, seed: int = 0) -> Path:
    """A PathMNIST-format file at ``root/pathmnist.npz`` (official keys, dtypes and shapes)."""
    root = root / f"n{n_train}"
    path = root / "pathmnist.npz"
    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("val", max(8, n_train // 8)), ("test", max(8, n_train // 8))):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, CLASSES, (n, 1)).astype(np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / ".pathmnist.tmp.npz"
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path


def medvision_side(ctx: harness.Context, root: Path, s: dict[str, Any]) -> dict[str, Any]:
    """One medvision run of the MedMNIST experiment; its timer JSON."""
    overrides = [
        "experiment=medmnist/resnet18_28",
        f"data.root={root}",
        "data.cache=memory",
        f"data.batch_size={s['batch']}",
        f"model.net.depth={s['depth']}",
        "callbacks.gradcam=null",
        "model.net.conv1_t_size=7",
        "model.net.conv1_t_stride=2",
        "model.net.no_max_pool=false",
        f"++trainer.max_steps={s['steps']}",
        "++trainer.limit_val_batches=0",
        "test=false",
    ]
    return harness.medvision_run(ctx, overrides, "cls_train", s["warmup"], monitor="val/auc")


def plain_side(root: Path, s: dict[str, Any], seed: int = 42) -> dict[str, float]:
    """A hand-written loop: arrays -> dicts -> CacheDataset -> DataLoader -> ResNet, CE, Adam."""
    import torch
    from monai.data import CacheDataset, DataLoader
    from monai.networks import nets
    from monai.transforms import Compose, EnsureTyped, ScaleIntensityRanged
    from monai.utils import set_determinism

    set_determinism(seed)
    with np.load(root / "pathmnist.npz") as archive:
        images, labels = archive["train_images"], archive["train_labels"]
    data = [
        {"image": np.moveaxis(img, -1, 0).astype(np.float32), "label": lab.astype(np.int64)}
        for img, lab in zip(images, labels, strict=False)
    ]
    transform = Compose(
        [
            ScaleIntensityRanged(["image"], a_min=0.0, a_max=255.0, b_min=-1.0, b_max=1.0),
            EnsureTyped(["image"], track_meta=False),
        ]
    )
    loader = DataLoader(CacheDataset(data, transform, progress=False), batch_size=s["batch"], shuffle=True)
    net = getattr(nets, f"resnet{s['depth']}")(
        spatial_dims=2, n_input_channels=3, num_classes=CLASSES, conv1_t_size=7, conv1_t_stride=2, no_max_pool=False
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    starts, ends, sizes = [], [], []
    import time

    net.train()
    while len(ends) < s["steps"]:
        for batch in loader:
            starts.append(time.perf_counter())
            image, label = batch["image"], batch["label"].long().reshape(-1)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(image), label)
            loss.backward()
            opt.step()
            ends.append(time.perf_counter())
            sizes.append(int(image.shape[0]))
            if len(ends) >= s["steps"]:
                break
    return {"images_per_s": harness.throughput(starts, ends, sizes, s["warmup"]), "steps": len(ends)}


def run(ctx: harness.Context) -> list[dict[str, Any]]:
    """A B A B rounds; one row: images/s and the ratio (goal >= 0.95)."""
    s = ctx.pick(SIZES)
    n_train = s["batch"] * (s["steps"] + 1)  # one epoch holds every step
    root = write_npz(ctx.workdir / "data" / "medmnist_bench", n_train).parent

    def medvision(i: int) -> dict[str, float]:
        result = medvision_side(ctx, root, s)
        return {"images_per_s": result["throughput"], "steps": result["steps"]}

    results = harness.alternate({"medvision": medvision, "plain": lambda i: plain_side(root, s)}, ctx.repeats, ctx.log)
    note = (
        f"PathMNIST-format arrays (28x28 RGB, {n_train} training images: one epoch), ResNet-{s['depth']} (standard "
        f"7x7/2 stem + max-pool), batch {s['batch']}, Adam, {s['steps']} steps, the first {s['warmup']} not timed; "
        "medvision: "
        "`experiment=medmnist/resnet18_28 data.cache=memory callbacks.gradcam=null`, validation off"
    )
    return [
        harness.compare_row(
            "2",
            "Training throughput, 2D classification 28x28",
            "images/s",
            harness.column(results["medvision"], "images_per_s"),
            harness.column(results["plain"], "images_per_s"),
            goal=0.95,
            note=note,
        )
    ]
