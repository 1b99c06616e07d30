"""Modality dropout: whole input channels zeroed at random during training, so a model copes with a missing one.

A model trained on CT + PET (or T1 + T2 + FLAIR) learns to lean on every channel; at prediction a
case that lacks one is then out of its training distribution. Zeroing whole channels of training
samples at random (never all channels of a sample) teaches it what a missing modality looks like:
a channel of zeros, which is what ``medvision-predict missing_modalities=zero`` gives the network
for a modality a case lacks (zero after normalisation: the normalised image's mean). The same
idea as ModDrop (Neverova et al. 2016) and the modality dropout of hetero-modal segmentation
(Havaei et al. 2016, HeMIS).

Draws come from torch's global generator, which every run reseeds before each training step
from ``(seed, epoch, step, rank)`` (:class:`medvision.callbacks.reseed.ReseedEveryStep`), so the
channels dropped are a function of those: a resumed run drops the same ones.
"""

from __future__ import annotations

import torch


def drop_modalities(image: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each channel of each sample with ``probability``, keeping at least one channel per sample.

    Args:
        image: ``(B, C, *spatial)``.
        probability: the chance that a channel of a sample is zeroed (0: no change).
        generator: the random generator (default: torch's global one, on the CPU, so the draws
            do not depend on the device).

    Returns:
        ``image`` with the dropped channels zeroed (a new tensor; ``image`` when nothing is dropped).
    """
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"modality_dropout must be in [0, 1), got {probability}")
    batch, channels = image.shape[:2]
    if probability == 0.0 or channels < 2:
        return image
    keep = torch.rand(batch, channels, generator=generator) >= probability
    none_kept = ~keep.any(dim=1)
    if none_kept.any():  # never all channels of a sample: keep one of them, drawn uniformly
        rescue = torch.randint(channels, (int(none_kept.sum()),), generator=generator)
        keep[none_kept.nonzero(as_tuple=True)[0], rescue] = True
    if keep.all():
        return image
    mask = keep.to(device=image.device, dtype=image.dtype).reshape(batch, channels, *([1] * (image.ndim - 2)))
    return image * mask
