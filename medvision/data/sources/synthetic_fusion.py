"""A synthetic task only image + clinical fusion can solve, written as real PNG files and a CSV.

Each case is a small grey image and a clinical record (``age``, ``psa``, ``sex``, ``site``).
Half of the images hold a bright blob, half of the patients are older than 60, the four
combinations in equal numbers, and

    label = positive  if  (bright blob present) XOR (age > 60)  else  negative,

flipped for a fraction ``label_noise`` of the cases. Every image also holds a dim blob (so the
network must judge brightness, not only find a blob). ``psa``, ``sex`` and ``site`` are noise,
with some missing values (empty cells). Neither the image nor the record alone says anything about
the label (each is independent of it by construction); together they decide it. The permutation
importance of the record must rank ``age`` first and the noise columns near zero.

The source also writes ``splits.json`` (medvision's splits format, read through
``data.splits_file``): the split is stratified by the four (blob, age) combinations, so that
within each split too neither input alone is associated with the label. A random split of a
balanced set is not: if the training cases happen to pair the blob with one class, the test cases
pair it with the other, and a single-input model scores systematically below or above 0.5.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

#: the class names: index 0 negative, 1 positive
LABEL_NAMES = ["negative", "positive"]


class SyntheticFusion:
    """Images (PNG) and clinical records (CSV) whose label is XOR(bright blob, age > 60).

    Args:
        num_cases: number of cases (each its own subject); rounded down to a multiple of 4 so the
            four (blob, age) combinations are equally many.
        size: side of the square images (pixels).
        label_noise: fraction of cases whose label is flipped.
        missing: fraction of missing values in each noise column (``psa``, ``sex``).
        modalities: image columns: ``[image]`` is one ``image`` column; several names write
            ``image_<name>`` columns, the blob in the first modality, the others noise with a
            dim blob (a second image per case for late fusion).
        blob_amplitude: brightness added by the bright blob (the dim one adds a third of it).
        noise: standard deviation of the background noise (0..1 scale).
        val_fraction: fraction of each combination's cases in the validation split of ``splits.json``.
        test_fraction: fraction of each combination's cases in its test split.
        seed: the generator's seed.
    """

    #: the file that holds the cases (``prepare`` looks for it; ``ClinicalDataModule`` reads it)
    manifest_name = "cases.csv"
    name = "synthetic_fusion"

    def __init__(
        self,
        num_cases: int = 240,
        size: int = 32,
        label_noise: float = 0.03,
        missing: float = 0.1,
        modalities: list[str] | None = None,
        blob_amplitude: float = 0.6,
        noise: float = 0.08,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        if num_cases < 8:
            raise ValueError(f"num_cases must be at least 8, got {num_cases}")
        self.num_cases = num_cases - num_cases % 4
        self.size = size
        self.label_noise = label_noise
        self.missing = missing
        self.modalities = list(modalities or ["image"])
        self.blob_amplitude = blob_amplitude
        self.noise = noise
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed

    def params(self) -> dict[str, Any]:
        """The parameters that determine the written files."""
        return {k: v for k, v in vars(self).items() if k != "name"}

    def _image(self, rng: np.random.Generator, bright: bool) -> np.ndarray:
        """A ``size`` x ``size`` image in 0..1: noise, a dim blob, and (``bright``) a bright one."""
        n = self.size
        image = 0.3 + self.noise * rng.standard_normal((n, n))
        yy, xx = np.mgrid[0:n, 0:n]
        sigma = max(1.0, n / 8)
        margin = int(3 * sigma)
        for amplitude in ([self.blob_amplitude] if bright else []) + [self.blob_amplitude / 3]:
            cy, cx = rng.integers(margin, n - margin, size=2)
            image += amplitude * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        return np.clip(image, 0.0, 1.0)

    def write(self, folder: Path) -> None:
        """Write ``images/case_XXX[_<modality>].png``, ``cases.csv`` and ``splits.json`` into ``folder``."""
        from PIL import Image

        rng = np.random.default_rng(self.seed)
        (folder / "images").mkdir()
        n = self.num_cases
        cells = np.array([(i % 2, (i // 2) % 2) for i in range(n)])[rng.permutation(n)]
        several = self.modalities != ["image"]
        image_columns = [f"image_{m}" for m in self.modalities] if several else ["image"]
        rows = []
        for i, (blob, old) in enumerate(cells):
            case = f"case_{i:03d}"
            files = []
            for k, column in enumerate(image_columns):
                picture = self._image(rng, bright=bool(blob) and k == 0)
                name = f"{case}_{column.removeprefix('image_')}.png" if several else f"{case}.png"
                Image.fromarray((picture * 255.0 + 0.5).astype(np.uint8)).save(folder / "images" / name)
                files.append(f"images/{name}")
            age = int(rng.integers(61, 91)) if old else int(rng.integers(30, 60))
            label = int(blob) ^ int(old)
            if rng.random() < self.label_noise:
                label = 1 - label
            psa = f"{rng.lognormal(1.5, 0.5):.2f}" if rng.random() >= self.missing else ""
            sex = str(rng.choice(["F", "M"])) if rng.random() >= self.missing else ""
            site = str(rng.choice(["A", "B", "C"]))
            rows.append([*files, age, psa, sex, site, LABEL_NAMES[label], case])
        with (folder / self.manifest_name).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([*image_columns, "age", "psa", "sex", "site", "label", "id"])
            writer.writerows(rows)
        self._write_split(folder, cells)

    def _write_split(self, folder: Path, cells: np.ndarray) -> None:
        """``splits.json``: each (blob, age) combination split by the fractions (the cases are in random order)."""
        split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for cell in ((0, 0), (0, 1), (1, 0), (1, 1)):
            cases = [f"case_{i:03d}" for i, c in enumerate(cells) if tuple(c) == cell]
            n_test, n_val = round(self.test_fraction * len(cases)), round(self.val_fraction * len(cases))
            split["test"] += cases[:n_test]
            split["val"] += cases[n_test : n_test + n_val]
            split["train"] += cases[n_test + n_val :]
        meta = {"format": "medvision-splits", "version": 1, "seed": self.seed, "num_folds": None, "fold": 0}
        content = {**meta, **{k: sorted(v) for k, v in split.items()}, "splits_file": None}
        (folder / "splits.json").write_text(json.dumps(content, indent=1) + "\n")
