"""``SegmenterModule``: trains on patches, evaluates whole volumes with a sliding window.

It knows the segmentation problem and nothing about file formats. The network is any
``nn.Module`` factory taking ``in_channels`` and ``out_channels`` (MONAI's nets).

Where the metrics are computed:

- ``val/...`` (every validation epoch): in the preprocessed space (reoriented, resampled to
  ``data.transforms.pixdim``, cropped, padded), against the preprocessed label; cheap, and only
  used to pick the best checkpoint.
- ``test/dice_<label>``, ``test/dice_mean``, ``test/hd95_<label>``, ``test/hd95_mean``: as nnU-Net
  and the Medical Segmentation Decathlon score, against each case's label file on its own grid:
  the class probabilities are put back on that grid (the preprocessing inverted) and the
  arg-max is taken there; HD95 is in mm of the label file's voxels. This needs
  :attr:`SegmenterModule.original_space`, which ``medvision.train.build`` takes from the
  DataModule. ``test_preprocessed/dice_<label>`` and ``test_preprocessed/dice_mean`` keep the
  preprocessed-space Dice beside them (for comparison with ``val/``; no HD95). ``test/loss`` is
  the loss in the preprocessed space.
- test and prediction average the class probabilities over every combination of flips along
  :attr:`SegmenterModule.tta_axes` (mirroring test-time augmentation, ``tta=mirror``: 8 passes in
  3D) inside the sliding window; validation never does (it only picks the checkpoint).
- a module without ``original_space`` (built directly, or on data without label files) computes
  ``test/...`` in the preprocessed space, as validation does, and logs no ``test_preprocessed/``.

Memory: ``model.inferer.memory_gb`` (GiB; ``null``, the default: no bound) bounds what one image's
sliding window holds: the window batch size and the devices of the windows and of the stitched output
come from :func:`medvision.models.inference_memory.sliding_window_kwargs`, and the logarithm (test-time
mirroring) and the softmax of :meth:`SegmenterModule.predict_step` are taken in place.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.inferers import sliding_window_inference
from torch import nn

from medvision.metrics.segmentation import SegmentationMetrics
from medvision.models import inference_memory
from medvision.models.base import MedvisionModule
from medvision.models.base import plain as _plain
from medvision.models.modality_dropout import drop_modalities
from medvision.utils.errors import MedvisionError


def _spacing(image: torch.Tensor) -> list[float] | None:
    """Voxel size (mm) of the first image of a MetaTensor batch, for HD95 in mm."""
    pixdim = getattr(image, "pixdim", None)
    if pixdim is None:
        return None
    first = pixdim[0] if isinstance(pixdim, (list, tuple)) else pixdim
    return [float(v) for v in torch.as_tensor(first).flatten().tolist()]


class SegmenterModule(MedvisionModule):
    """Semantic segmentation of 2D/3D images.

    Args:
        net: factory of the network, called as ``net(in_channels=..., out_channels=...)``.
        loss: loss taking ``(logits, label)`` with an integer label map (e.g. ``DiceCELoss``
            with ``to_onehot_y=True, softmax=True``).
        optimizer: partial optimizer, called with ``params``.
        scheduler: partial LR scheduler called with ``optimizer`` (or ``None``).
        label_names: name of each label value, background first (from the data).
        in_channels: image channels (from the data).
        inferer: sliding-window settings: ``roi_size``, ``sw_batch_size``, ``overlap``, ``mode``, and
            ``memory_gb``: a budget (GiB) for one image's inference, from which ``sw_batch_size`` (at
            most the configured one) and the devices are set (:mod:`medvision.models.inference_memory`);
            ``None``: no bound.
        val_hd95: also compute HD95 during validation (always computed at test).
        scheduler_interval: ``epoch`` or ``step``.
        modality_dropout: during training only, each input channel of each sample is zeroed with
            this probability, never all channels of a sample (:mod:`medvision.models.modality_dropout`),
            so that the model copes with a modality missing at prediction
            (``medvision-predict missing_modalities=zero``). 0: off; no effect on one channel.
        modalities: the name of each input channel (from the data; ``medvision-predict`` matches a
            CSV's columns and names missing modalities by them).
    """

    #: the problem this module solves (:func:`medvision.models.loading.problem_of`)
    problem = "segmentation"

    #: ``original_space(batch, probabilities)`` -> one ``(probabilities, label, spacing)`` per
    #: case of a test batch, on the grid of its label file (``medvision.data.original_space``);
    #: set by ``medvision.train.build``. Not a hyperparameter: checkpoints do not hold it.
    #: ``None``: test metrics in the preprocessed space.
    original_space: Callable[[Mapping[str, Any], torch.Tensor], Sequence[tuple[Any, ...]]] | None = None

    #: spatial axes (0 = first after the channel) whose flips test and prediction average over
    #: (set from ``tta`` and the run's training flips by ``medvision.train.build`` and
    #: ``medvision-predict``); ``()``: one plain pass. Not a hyperparameter.
    tta_axes: tuple[int, ...] = ()

    def __init__(
        self,
        net: Callable[..., nn.Module],
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        label_names: Sequence[str],
        in_channels: int = 1,
        inferer: dict[str, Any] | None = None,
        val_hd95: bool = False,
        scheduler_interval: str = "epoch",
        modality_dropout: float = 0.0,
        modalities: Sequence[str] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, scheduler_interval, monitor="val/dice_mean")
        if not 0.0 <= float(modality_dropout) < 1.0:
            raise MedvisionError(
                f"model.modality_dropout={modality_dropout} is not a probability in [0, 1)",
                fix="model.modality_dropout=0.25 (each input channel zeroed with that chance in training; 0: off)",
            )
        self.modality_dropout = float(modality_dropout)
        self.modalities = [str(m) for m in modalities] if modalities else None
        self.save_hyperparameters(logger=False, ignore=["net", "loss", "optimizer", "scheduler"])
        self.label_names = list(label_names)
        self.net = net(in_channels=in_channels, out_channels=len(self.label_names))
        self.loss_fn = loss
        self.inferer = dict(inferer or {})
        inference_memory.budget_gb(self.inferer.get("memory_gb"))  # a bad value fails here, not after training
        #: bytes one window creates in the predictor, per (window, channels, mirrored axes): traced once
        self._window_bytes: dict[tuple[Any, ...], int] = {}
        self.val_metrics = SegmentationMetrics(self.label_names, hd95=val_hd95)
        self.test_metrics = SegmentationMetrics(self.label_names, hd95=True)
        self.test_preprocessed_metrics = SegmentationMetrics(self.label_names, hd95=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a patch or image batch."""
        return self.net(x)

    def infer(self, image: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """Logits of whole images by sliding-window inference (settings from ``inferer``).

        Args:
            image: ``(B, C, *spatial)``.
            tta: average over the flips of :attr:`tta_axes` inside each window; the result is
                then the log of the averaged probabilities (its softmax is their mean).
        """
        predictor, axes = self._predictor(tta)
        image = _plain(image)
        bounded = self.window_settings(image, tta)
        out = sliding_window_inference(
            image,
            roi_size=self.inferer.get("roi_size"),
            sw_batch_size=bounded.pop("sw_batch_size", self.inferer.get("sw_batch_size", 4)),
            predictor=predictor,
            overlap=self.inferer.get("overlap", 0.25),
            mode=self.inferer.get("mode", "gaussian"),
            **bounded,
        )
        if not axes:
            return out
        # with TTA the windows hold (and are blended as) probabilities
        if self.memory_budget is not None:  # the same values, without two more full-volume copies
            return out.clamp_min_(1e-12).log_()
        return torch.log(out.clamp_min(1e-12))

    def _predictor(self, tta: bool) -> tuple[nn.Module, tuple[int, ...]]:
        """What the sliding window calls on each window batch, and the axes it mirrors."""
        axes = tuple(self.tta_axes) if tta else ()
        return (self.net if not axes else _MirroredPredictor(self.net, axes)), axes

    @property
    def memory_budget(self) -> float | None:
        """``inferer.memory_gb`` in GiB, or ``None`` (no bound)."""
        return inference_memory.budget_gb(self.inferer.get("memory_gb"))

    def window_settings(self, image: torch.Tensor, tta: bool = False) -> dict[str, Any]:
        """The sliding window's options under :attr:`memory_budget` (``{}`` without one): ``sw_batch_size``,
        ``sw_device``, ``device`` (:func:`medvision.models.inference_memory.sliding_window_kwargs`).

        Args:
            image: ``(B, C, *spatial)``, the images about to be inferred.
            tta: as :meth:`infer`'s (mirroring makes each window's memory larger).

        Raises:
            MedvisionError: the budget cannot hold the image's full-volume buffers and one window.
        """
        budget = self.memory_budget
        if budget is None:
            return {}
        from monai.utils import fall_back_tuple

        predictor, axes = self._predictor(tta)
        spatial = tuple(int(s) for s in image.shape[2:])
        roi = tuple(int(r) for r in fall_back_tuple(self.inferer.get("roi_size") or spatial, spatial))
        key = (roi, int(image.shape[1]), axes)
        if key not in self._window_bytes:
            self._window_bytes[key] = inference_memory.window_activation_bytes(predictor, int(image.shape[1]), roi)
        return inference_memory.sliding_window_kwargs(
            spatial,
            int(image.shape[1]),
            len(self.label_names),
            roi,
            budget,
            window_bytes=self._window_bytes[key],
            device=self.device,
            sw_batch_size=int(self.inferer.get("sw_batch_size", 4)),
            images=int(image.shape[0]),
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        image, label = _plain(batch["image"]), _plain(batch["label"])
        image = drop_modalities(image, self.modality_dropout)
        loss = self.loss_fn(self(image), label)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=image.shape[0])
        return loss

    def _evaluate(
        self, batch: dict[str, Any], metrics: SegmentationMetrics, prefix: str, tta: bool = False
    ) -> torch.Tensor:
        """Log the loss and add the batch to ``metrics``, in the preprocessed space; the logits."""
        image, label = batch["image"], _plain(batch["label"])
        # under a memory budget a GPU may stitch the windows in host memory: the metrics are where the label is
        logits = self.infer(image, tta=tta).to(label.device)
        self.log(f"{prefix}/loss", self.loss_fn(logits, label), batch_size=image.shape[0], sync_dist=True)
        rows = metrics.update(logits, label, spacing=_spacing(image))
        if prefix == "test" and metrics is self.test_metrics:
            self._add_test_cases(batch, logits, rows)
        return logits

    def _add_test_cases(self, batch: dict[str, Any], logits: torch.Tensor, rows: Sequence[dict[str, float]]) -> None:
        """Keep a row per test case: its id, its metrics and its middle slice (image, label, prediction)."""
        image, label = _plain(batch["image"]), _plain(batch["label"])
        prediction = torch.argmax(logits, dim=1, keepdim=True)
        ids = batch.get("id")
        for b, row in enumerate(rows):
            case_id = str(ids[b]) if ids is not None else f"case_{len(self.test_cases)}"
            self.test_cases.append({"id": case_id, **row, "overlay": _middle_slices(image[b], label[b], prediction[b])})

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Score each case against its label file on its own grid (or, without
        :attr:`original_space`, in the preprocessed space)."""
        if self.original_space is None:
            self._evaluate(batch, self.test_metrics, "test", tta=True)
            return
        logits = self._evaluate(batch, self.test_preprocessed_metrics, "test", tta=True)
        probabilities = torch.softmax(logits.float(), dim=1)
        rows = []
        for case_probabilities, label, spacing in self.original_space(batch, probabilities):
            rows += self.test_metrics.update(
                case_probabilities[None].to(self.device), label[None].to(self.device), spacing=spacing
            )
        self._add_test_cases(batch, logits, rows)

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> torch.Tensor:
        """Class probabilities (softmax over channels) of whole images, by sliding window (with TTA);
        under :attr:`memory_budget` the softmax is taken in place."""
        logits = self.infer(batch["image"], tta=True).float()
        if self.memory_budget is not None:
            return inference_memory.softmax_(logits, dim=1)
        return torch.softmax(logits, dim=1)

    def _log_epoch(self, metrics: SegmentationMetrics, prefix: str) -> None:
        values = metrics.compute(prefix)  # gathers across ranks: called on every rank
        metrics.reset()
        self.log(f"{prefix}/dice_mean", values.pop(f"{prefix}/dice_mean"), prog_bar=True)
        self.log_dict(values)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics, "test")
        if self.original_space is not None:
            self._log_epoch(self.test_preprocessed_metrics, "test_preprocessed")


def _middle_slices(image: torch.Tensor, label: torch.Tensor, prediction: torch.Tensor) -> dict[str, Any]:
    """The middle slice (last spatial axis) of a case's first image channel (as 0..255 ``uint8``, scaled
    between its 1st and 99th percentiles), label and prediction: a small picture kept per test case."""
    import numpy as np

    def middle(x: torch.Tensor) -> np.ndarray:
        x = x[0].detach().cpu()
        return (x[..., x.shape[-1] // 2] if x.ndim == 3 else x).numpy()

    picture = middle(image).astype(np.float32)
    low, high = np.percentile(picture, [1, 99]) if picture.size else (0.0, 1.0)
    scaled = np.clip((picture - low) / max(float(high - low), 1e-6), 0, 1)
    return {
        "image": (scaled * 255).astype(np.uint8),
        "label": middle(label).astype(np.uint8),
        "prediction": middle(prediction).astype(np.uint8),
    }


class _MirroredPredictor(nn.Module):
    """A window's class probabilities averaged over every combination of flips along ``axes``."""

    def __init__(self, net: nn.Module, axes: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.flips = [
            [a + 2 for a, on in zip(axes, bits, strict=True) if on]
            for bits in itertools.product((False, True), repeat=len(axes))
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float32, device=x.device)
        for dims in self.flips:
            logits = self.net(x.flip(dims) if dims else x)
            probs = torch.softmax(logits.float(), dim=1)
            total = total + (probs.flip(dims) if dims else probs)
        return total / len(self.flips)
