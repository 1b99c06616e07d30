"""``GANModule``: a class-conditional GAN for 2D and 3D images (Lightning, manual optimisation).

It knows the generation problem and nothing about file formats. The networks come from one
factory (``conf/model/net/gan/*.yaml``, e.g. :class:`medvision.models.nets.gan.ConditionalDCGAN`)
holding ``generator`` and ``discriminator``; label names, channels and 2D/3D come from the data
(``datamodule.model_kwargs()``), the image size from ``model.image_size`` (``${data.size}``).

Each training batch makes one discriminator step and, every ``n_critic`` batches, one
generator step, then updates an exponential moving average (EMA) of the generator. Losses:

* ``non_saturating`` (Goodfellow et al. 2014): D ``softplus(-D(x)) + softplus(D(G(z)))``,
  G ``softplus(-D(G(z)))``;
* ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D ``relu(1 - D(x)) + relu(1 + D(G(z)))``,
  G ``-D(G(z))``;
* ``wgan_gp`` (Gulrajani et al. 2017): D ``D(G(z)) - D(x) + gp_weight * (|grad D(x_hat)| - 1)^2``,
  G ``-D(G(z))``.

(MONAI's ``PatchAdversarialLoss`` is not used: its BCE criterion is sigmoid + ``BCELoss``, which
autocast refuses, and its hinge squashes the scores with ``tanh`` first.)

Mixed precision: backward passes go through ``manual_backward`` (loss scaling for
``16-mixed``), the gradient penalty is computed in float32 outside autocast, and nothing names
a device. Both optimisers' states and the EMA generator are in every checkpoint. With manual
optimisation Lightning's ``global_step`` counts optimiser steps: two per batch when
``n_critic=1`` (D and G), so ``trainer.max_steps`` counts both.

Validation and test log ``{val,test}/fd``: the Fréchet distance between real images of the
split and EMA-generator samples with the same labels (fixed noise, so epochs compare), in a
fixed feature space: the penultimate features of a medvision classifier checkpoint
(``feature_ckpt``) or, by default, a seeded random convolutional network
(:class:`~medvision.models.nets.gan.RandomConvFeatures`; a proxy that selects the best
checkpoint of one run, not a score to compare across datasets). torchmetrics'
``FrechetInceptionDistance`` accumulates it (synced across DDP ranks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from medvision.models.base import plain
from medvision.utils.errors import MedvisionError

LOSSES: tuple[str, ...] = ("non_saturating", "hinge", "wgan_gp")


def noise_for_seeds(seeds: Sequence[int], latent_dim: int) -> torch.Tensor:
    """One noise vector per seed, (len(seeds), latent_dim), each drawn from its own generator.

    A sample is reproducible from its seed alone, whatever batch it was made in.
    """
    rows = [torch.randn(latent_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.stack(rows) if rows else torch.empty(0, latent_dim)


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss from its scores of real and fake images (without a gradient penalty)."""
    if kind == "non_saturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return fake.mean() - real.mean()


def generator_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss from the discriminator's scores of its images."""
    if kind == "non_saturating":
        return F.softplus(-fake).mean()
    return -fake.mean()


def gradient_penalty(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """WGAN-GP's ``E[(|grad_x D(x_hat, y)| - 1)^2]`` on random interpolates, in float32 outside autocast."""
    with torch.autocast(device_type=real.device.type, enabled=False):
        real, fake = real.float(), fake.float()
        alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device)
        mixed = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
        scores = discriminator(mixed, labels)
        (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
        return (grad.flatten(1).norm(2, dim=1) - 1.0).square().mean()


def _ema_avg(decay: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """EMA with warm-up: ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (as TensorFlow's
    ``ExponentialMovingAverage(num_updates=n)``), so short runs are not dominated by the initial weights."""

    def avg(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1.0 + float(num_averaged)) / (10.0 + float(num_averaged)))
        return d * averaged + (1.0 - d) * current

    return avg


class GANModule(pl.LightningModule):
    """Class-conditional GAN (manual optimisation): D step every batch, G step every ``n_critic``.

    Logged: ``train/d_loss``, ``train/g_loss``, ``train/d_real``, ``train/d_fake`` (mean raw
    scores), ``train/gp`` (WGAN-GP), ``{val,test}/fd``.

    Args:
        net: factory called as ``net(in_channels=, num_classes=, spatial_dims=, image_size=)``
            returning a module with ``generator`` (``G(z, y)``, with a ``latent_dim`` attribute)
            and ``discriminator`` (``D(x, y)``).
        optimizer_g: partial optimiser of the generator, called with ``params``.
        optimizer_d: partial optimiser of the discriminator, called with ``params``.
        label_names: class names (from the data); the GAN conditions on their indices.
        in_channels: image channels (from the data).
        spatial_dims: 2 or 3 (from the data).
        image_size: one side, or one per spatial axis, of the data's images in model-input space.
        task: ``binary`` or ``multiclass`` (from the data; ``multilabel`` is refused: the GAN
            conditions on one class per image).
        loss: ``non_saturating``, ``hinge`` or ``wgan_gp``.
        gp_weight: weight of the WGAN-GP gradient penalty.
        n_critic: discriminator steps per generator step.
        ema_decay: decay of the generator's EMA (``None``: no EMA; samples come from the
            trained generator).
        output_range: ``[low, high]`` of the data in model-input space; the generator's
            ``tanh`` is mapped onto it (MedMNIST's load transforms give ``[-1, 1]``).
        feature_ckpt: a medvision classifier checkpoint trained on the same data whose
            penultimate features measure ``{val,test}/fd`` (``None``: a seeded random CNN).
        fd_seed: seed of the fixed validation noise and of the random feature network.
    """

    #: the problem this module solves (:func:`medvision.models.loading.problem_of`)
    problem = "generation"

    def __init__(
        self,
        net: Callable[..., nn.Module],
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        label_names: Sequence[str],
        in_channels: int = 1,
        spatial_dims: int = 2,
        image_size: int | Sequence[int] = 28,
        task: str = "multiclass",
        loss: Literal["non_saturating", "hinge", "wgan_gp"] = "non_saturating",
        gp_weight: float = 10.0,
        n_critic: int = 1,
        ema_decay: float | None = 0.999,
        output_range: Sequence[float] = (-1.0, 1.0),
        feature_ckpt: str | None = None,
        fd_seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["net", "optimizer_g", "optimizer_d"])
        self.automatic_optimization = False
        self.label_names = list(label_names)
        self.num_classes = len(self.label_names)
        self.image_shape = (image_size,) * spatial_dims if isinstance(image_size, int) else tuple(image_size)
        self.net = net(
            in_channels=in_channels, num_classes=self.num_classes, spatial_dims=spatial_dims, image_size=image_size
        )
        self.latent_dim = int(self.net.generator.latent_dim)
        self.optimizer_g_factory, self.optimizer_d_factory = optimizer_g, optimizer_d
        self.loss_kind, self.gp_weight, self.n_critic = loss, gp_weight, n_critic
        self.low, self.high = (float(output_range[0]), float(output_range[-1])) if len(output_range) else (-1.0, 1.0)
        self.generator_ema: AveragedModel | None = None
        if ema_decay is not None and 0.0 < ema_decay < 1.0:
            self.generator_ema = AveragedModel(self.net.generator, avg_fn=_ema_avg(ema_decay), use_buffers=True)
            self.generator_ema.requires_grad_(False)
        self.fd_seed = fd_seed
        self.feature_ckpt = feature_ckpt
        # built on first use and kept out of the module tree: the feature network's weights are
        # not part of the GAN's checkpoint, and sampling from a checkpoint never needs feature_ckpt
        self._fd_metrics: dict[str, Any] = {}
        self._checked_batch = False

    def _fd_metric(self, stage: str) -> Any:
        """The stage's torchmetrics ``FrechetInceptionDistance`` over the fixed feature network."""
        metric = self._fd_metrics.get(stage)
        if metric is None:
            from torchmetrics.image.fid import FrechetInceptionDistance

            from medvision.metrics.generative import feature_extractor
            from medvision.models.loading import module_from_checkpoint
            from medvision.models.nets.gan import RandomConvFeatures

            if self.feature_ckpt:
                source, _ = module_from_checkpoint(self.feature_ckpt)
                theirs = source.hparams.get("in_channels")
                if theirs != self.hparams.in_channels:
                    raise MedvisionError(
                        f"model.feature_ckpt={self.feature_ckpt} takes {theirs}-channel images, the GAN's data have "
                        f"{self.hparams.in_channels}",
                        fix="use a classifier trained on the same data config (as_rgb included)",
                    )
            else:
                source = RandomConvFeatures(self.hparams.spatial_dims, self.hparams.in_channels, seed=self.fd_seed)
            metric = FrechetInceptionDistance(feature=feature_extractor(source), reset_real_features=True)
            self._fd_metrics[stage] = metric
        return metric.to(self.device)

    def setup(self, stage: str) -> None:
        """Check the settings before the first batch.

        (Here rather than in ``__init__``: an error raised inside Hydra's ``instantiate`` would
        reach the user wrapped in its ``InstantiationException``.)

        Raises:
            MedvisionError: multi-label data, or a setting out of its range.
        """
        hp = self.hparams
        if hp.task == "multilabel":
            raise MedvisionError(
                "model=gan conditions on one class per image; this data is multi-label",
                fix="train the GAN on a binary or multi-class dataset (e.g. data.flag=pneumoniamnist)",
            )
        if hp.loss not in LOSSES:
            raise MedvisionError(
                f"model.loss={hp.loss!r} is not one of {'|'.join(LOSSES)}", fix="model.loss=non_saturating"
            )
        if hp.n_critic < 1:
            raise MedvisionError(f"model.n_critic={hp.n_critic} must be >= 1", fix="model.n_critic=1")
        if len(hp.output_range) != 2 or not hp.output_range[0] < hp.output_range[1]:
            raise MedvisionError(
                f"model.output_range={list(hp.output_range)} must be [low, high] with low < high",
                fix="model.output_range=[-1.0,1.0]",
            )
        if hp.ema_decay is not None and not 0.0 < hp.ema_decay < 1.0:
            raise MedvisionError(
                f"model.ema_decay={hp.ema_decay} must be in (0, 1) or null", fix="model.ema_decay=0.999"
            )

    # ----------------------------------------------------------------- sampling
    @property
    def sampler(self) -> nn.Module:
        """The generator samples come from: the EMA copy when there is one."""
        return self.generator_ema.module if self.generator_ema is not None else self.net.generator

    def to_output_range(self, x: torch.Tensor) -> torch.Tensor:
        """Map the generator's ``[-1, 1]`` onto ``output_range``."""
        return self.low + (x + 1.0) * (0.5 * (self.high - self.low))

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, noise: torch.Tensor | None = None, ema: bool = True) -> torch.Tensor:
        """Images of the given classes in model-input space, generator in eval mode (batch-independent).

        Args:
            labels: class indices (B,).
            noise: (B, latent_dim) noise (default: standard normal from torch's global RNG).
            ema: use the EMA generator (when the module has one).
        """
        generator = self.sampler if ema else self.net.generator
        labels = labels.to(self.device).long().reshape(-1)
        noise = (
            torch.randn(len(labels), self.latent_dim, device=self.device) if noise is None else noise.to(self.device)
        )
        was_training = generator.training
        generator.eval()
        try:
            return self.to_output_range(generator(noise.to(next(generator.parameters()).dtype), labels).float())
        finally:
            generator.train(was_training)

    # ----------------------------------------------------------------- training
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            self.optimizer_g_factory(params=self.net.generator.parameters()),
            self.optimizer_d_factory(params=self.net.discriminator.parameters()),
        ]

    def _check(self, images: torch.Tensor) -> None:
        if self._checked_batch:
            return
        self._checked_batch = True
        if tuple(images.shape[2:]) != self.image_shape:
            raise MedvisionError(
                f"the data's images are {list(images.shape[2:])} but model.image_size is {list(self.image_shape)}",
                fix=f"set model.image_size={list(images.shape[2:])}"
                " (or make the data's load transforms give that size)",
            )
        lo, hi = float(images.min()), float(images.max())
        outside = max(self.low - lo, hi - self.high, 0.0) / (self.high - self.low)
        message = (
            f"the data's images span {lo:.3g}..{hi:.3g}, outside model.output_range=[{self.low}, {self.high}]: "
            "the generator cannot produce those values"
        )
        if outside > 0.25:  # another range altogether (e.g. 0..255, or -1..1 for [0, 1])
            raise MedvisionError(
                message,
                fix="set model.output_range to the range of the data's load transforms "
                "(e.g. [0.0,1.0] for data=dicom_modality)",
            )
        if outside > 0.01:  # e.g. random intensity augmentation past the load range
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(message + " (a little: random intensity augmentation?)")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        real = plain(batch["image"]).float()
        labels = plain(batch["label"]).long().reshape(-1)
        self._check(real)
        opt_g, opt_d = self.optimizers()
        generator, discriminator = self.net.generator, self.net.discriminator
        size = len(real)

        self.toggle_optimizer(opt_d)
        with torch.no_grad():
            fake = generator(torch.randn(size, self.latent_dim, device=self.device), labels)
        fake = self.to_output_range(fake)
        d_real, d_fake = discriminator(real, labels), discriminator(fake, labels)
        d_loss = discriminator_loss(self.loss_kind, d_real, d_fake)
        if self.loss_kind == "wgan_gp":
            gp = gradient_penalty(discriminator, real, fake, labels)
            d_loss = d_loss + self.gp_weight * gp
            self.log("train/gp", gp, on_step=False, on_epoch=True, batch_size=size)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        self.log_dict(
            {
                "train/d_loss": d_loss.detach(),
                "train/d_real": d_real.detach().float().mean(),
                "train/d_fake": d_fake.detach().float().mean(),
            },
            on_step=False,
            on_epoch=True,
            batch_size=size,
        )

        if (batch_idx + 1) % self.n_critic:
            return
        self.toggle_optimizer(opt_g)
        fake = self.to_output_range(generator(torch.randn(size, self.latent_dim, device=self.device), labels))
        g_loss = generator_loss(self.loss_kind, discriminator(fake, labels))
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(generator)
        self.log("train/g_loss", g_loss.detach(), prog_bar=True, on_step=False, on_epoch=True, batch_size=size)

    # ----------------------------------------------------------------- validation / test
    def _fd_update(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        metric = self._fd_metric(stage)
        real = plain(batch["image"]).float()
        labels = plain(batch["label"]).long().reshape(-1)
        first = self.fd_seed * 1_000_003 + batch_idx * 100_003
        noise = noise_for_seeds(range(first, first + len(labels)), self.latent_dim)
        metric.update(real, real=True)
        metric.update(self.sample(labels, noise), real=False)

    def _fd_log(self, stage: str) -> None:
        metric = self._fd_metric(stage)
        try:
            value = metric.compute().float()  # syncs across ranks: called on every rank
        except RuntimeError:  # fewer than 2 real or fake samples in the whole split
            value = torch.tensor(float("nan"))
        metric.reset()
        self.log(f"{stage}/fd", value, prog_bar=True)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._fd_update(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self._fd_log("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._fd_update(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        self._fd_log("test")
