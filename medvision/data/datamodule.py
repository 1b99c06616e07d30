"""``VolumeDataModule``: records -> split -> audit, for 2D/3D images and label maps.

It knows files, splits and records, and nothing about networks. The records come from a
Medical Segmentation Decathlon folder, an nnU-Net v2 raw dataset folder or a CSV manifest
(:mod:`medvision.data.records`); the split is computed, or read from a file, and written as
``splits.json`` (:mod:`medvision.data.splits`). The records of each split
(``{"image": path or [channel paths], "label": path, "subject", "id"}``) go to the DataModule base
(:class:`medvision.data.base.MedvisionDataModule`), which owns the MONAI transforms (``load``:
deterministic preprocessing, cached; ``augment``: random, training only), the cache, the
samplers and the loaders. Before any transform runs, every case is checked by the data audit
(:mod:`medvision.data.audit`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.utilities import rank_zero_only

from medvision.data.audit import AuditReport, audit
from medvision.data.base import CacheMode, MedvisionDataModule, SpatialDims
from medvision.data.loaders import LoaderKind
from medvision.data.records import DatasetInfo, Record, read_csv, read_msd, read_nnunet, record_files
from medvision.data.sources import DatasetSource, prepare
from medvision.data.splits import SPLITS, CaseSplit, make_split, write_splits
from medvision.utils.errors import MedvisionError
from medvision.utils.validate import check_choice

#: what a case that fails the data audit does (``data.on_invalid``)
InvalidPolicy = Literal["error", "skip"]
#: the layout of the folder ``data.root`` (``data.format``): MSD's dataset.json with a
#: ``training`` list, or nnU-Net v2's raw dataset (channel_names, file_ending, imagesTr/<case>_XXXX)
DatasetFormat = Literal["msd", "nnunet"]


class VolumeDataModule(MedvisionDataModule):
    """A LightningDataModule of 2D/3D images and label maps from an MSD or nnU-Net folder or a CSV manifest.

    Args:
        root: MSD folder (``dataset.json`` + imagesTr/labelsTr), or nnU-Net v2 raw dataset folder
            with ``format="nnunet"``. Written by ``source`` if missing.
        manifest: CSV manifest (``image,label[,subject,id]``, or one ``image_<modality>`` column
            per channel); used instead of ``root`` when set.
        format: the layout of ``root``: ``msd`` (:func:`~medvision.data.records.read_msd`) or
            ``nnunet`` (:func:`~medvision.data.records.read_nnunet`). Chosen, not guessed: a
            folder of the other layout fails with a message naming the right ``data=`` choice.
        source: a dataset source that writes ``root`` on first use (embedded datasets).
        label_names: label names for a CSV manifest (MSD folders name their labels).
        image_columns: the CSV manifest's image columns, one per modality in channel order
            (``None``: ``image``, or the ``image_<modality>`` columns). A CSV's modalities may lie
            on different grids: the ``load`` step ``LoadModalitiesd`` resamples them onto the
            first one's, and the audit checks them so (the label on the first one's grid, the
            others overlapping it).
        spatial_dims: 2 or 3.
        transforms: ``{"load": ..., "augment": ...}``, each an ordered mapping name -> MONAI dict
            transform (``None`` entries are dropped) or a list of transforms. Other keys are
            settings the transform configs interpolate (``pixdim``, ...).
        val_fraction: fraction of subjects for validation (holdout).
        test_fraction: fraction of subjects for testing.
        num_folds: k for k-fold cross-validation (``None``: holdout).
        fold: validation fold when ``num_folds`` is set.
        split_seed: seed of the subject shuffle (kept apart from the run's ``seed`` so that
            changing the training seed does not change the test set).
        splits_file: read the split from this file instead of computing it: a ``splits.json``
            a run wrote, or nnU-Net's ``splits_final.json`` (``fold`` picks the fold; the
            fractions, ``num_folds`` and ``split_seed`` are then unused).
        splits_report: JSON file the split is written to (``splits.json``: case ids of each
            split, and of every fold for k-fold; ``None``: not written). It holds every case
            of the manifest, before ``on_invalid=skip`` drops any (the audit report lists those).
        batch_size: training batch size (volumes; patch samplers multiply it).
        val_batch_size: batch size of validation and test (whole volumes).
        num_workers: DataLoader worker processes.
        loader: the training loader: ``torch`` (MONAI's ``DataLoader``) or ``thread`` (the
            next batch made in a background thread; :mod:`medvision.data.loaders`). Validation
            and test volumes (no random transforms) always use ``torch``.
        cache: ``none``, ``memory`` (``CacheDataset``), ``disk`` (``PersistentDataset``) or
            ``preprocessed`` (each case's ``load`` result stored once as ``.npy`` arrays and read
            memory-mapped by every worker and DDP rank; :mod:`medvision.data.preprocessed`).
        cache_dir: folder of the disk and preprocessed caches.
        samples_per_epoch: training samples an epoch draws (``null``: each case once).
        pin_memory: pin host memory (useful on GPU).
        patch_size: training patch size; the transforms and the model's sliding window refer
            to it in config (``${data.patch_size}``).
        on_invalid: what a case that fails the data audit does: ``error`` stops with a message
            naming every bad file; ``skip`` drops those cases (the report keeps them) and goes on.
        audit: run the data audit when the records are first needed.
        audit_report: JSON file the audit report is written to (``None``: not written).
        audit_cache_dir: folder caching what the audit read from each file (``None``: no cache).
        require_deidentified: identifying header fields (DICOM headers, NIfTI free text; the
            audit's ``identifiers`` check, :mod:`medvision.data.privacy`) are errors, not warnings.
    """

    def __init__(
        self,
        root: str | None = None,
        manifest: str | None = None,
        format: DatasetFormat = "msd",
        source: DatasetSource | None = None,
        label_names: Sequence[str] | None = None,
        image_columns: Sequence[str] | None = None,
        spatial_dims: SpatialDims = 3,
        transforms: Mapping[str, Any] | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        num_folds: int | None = None,
        fold: int = 0,
        split_seed: int = 0,
        splits_file: str | None = None,
        splits_report: str | None = None,
        batch_size: int = 2,
        val_batch_size: int = 1,
        num_workers: int = 0,
        loader: LoaderKind = "torch",
        cache: CacheMode = "memory",
        cache_dir: str | None = None,
        samples_per_epoch: int | None = None,
        pin_memory: bool = False,
        patch_size: Sequence[int] | None = None,
        on_invalid: InvalidPolicy = "error",
        audit: bool = True,
        audit_report: str | None = None,
        audit_cache_dir: str | None = None,
        require_deidentified: bool = False,
    ) -> None:
        super().__init__(
            transforms=transforms,
            batch_size=batch_size,
            val_batch_size=val_batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            loader=loader,
            cache=cache,
            cache_dir=cache_dir,
            samples_per_epoch=samples_per_epoch,
        )
        if root is None and manifest is None:
            raise MedvisionError(
                "the data config sets neither data.root nor data.manifest",
                fix="set data.root=<folder holding dataset.json> or data.manifest=<file.csv>",
            )
        self.root = root
        self.manifest = manifest
        self.format = check_choice("data.format", format, DatasetFormat)
        self.source = source
        self.label_names_override = list(label_names) if label_names else None
        self.image_columns = [str(c) for c in image_columns] if image_columns else None
        self.spatial_dims = spatial_dims
        self.split_args = dict(
            val_fraction=val_fraction, test_fraction=test_fraction, num_folds=num_folds, fold=fold, seed=split_seed
        )
        self.splits_file = splits_file
        self.splits_report = splits_report
        self.patch_size = list(patch_size) if patch_size else None
        self.on_invalid = check_choice("data.on_invalid", on_invalid, InvalidPolicy)
        self.audit = audit
        self.audit_report = audit_report
        self.audit_cache_dir = audit_cache_dir
        self.require_deidentified = require_deidentified
        #: the report of the data audit, once it has run
        self.audit_result: AuditReport | None = None
        self._info: DatasetInfo | None = None
        self._splits: dict[str, list[Record]] | None = None

    # ----------------------------------------------------------------- records and splits
    def prepare_data(self) -> None:
        """Write an embedded dataset on first use (atomic; safe to call from every rank); then the
        base's: with ``data.cache=preprocessed``, under a trainer, compute the missing cache entries."""
        self._write_source()
        super().prepare_data()

    def _write_source(self) -> None:
        """Write an embedded dataset on first use; a source that writes a CSV manifest writes it
        into ``root`` (the manifest's folder when ``root`` is unset)."""
        if self.source is not None:
            prepare(self.source, self.root if self.root is not None else Path(str(self.manifest)).parent)

    def _read_manifest(self) -> DatasetInfo:
        """Every record of the manifest; with the audit on, missing files are left for it to report."""
        self._write_source()
        if self.manifest is not None:
            return read_csv(
                self.manifest,
                self.label_names_override,
                require_files=not self.audit,
                infer_label_names=not self.audit,
                image_columns=self.image_columns,
            )
        reader = read_nnunet if self.format == "nnunet" else read_msd
        return reader(self.root, require_files=not self.audit)  # type: ignore[arg-type]

    def _split(self, raw: DatasetInfo) -> CaseSplit:
        """The configured split of ``raw``'s records: read from ``splits_file``, or computed."""
        ids, subjects = [str(r["id"]) for r in raw.records], [str(r["subject"]) for r in raw.records]
        return make_split(ids, subjects, splits_file=self.splits_file, **self.split_args)

    def _write_splits(self, split: CaseSplit, raw: DatasetInfo) -> None:
        """Write ``splits.json`` (rank 0; never over an input, and not over the file the split came from)."""
        if not self.splits_report or rank_zero_only.rank != 0:
            return
        from medvision.utils.io import refuse_input_as_output

        if self.splits_file and Path(self.splits_file).resolve() == Path(self.splits_report).resolve():
            return  # the split was read from there: it is written already
        refuse_input_as_output(self.splits_report, self._input_files(raw), what="data.splits_report")
        write_splits(self.splits_report, split, [str(r["id"]) for r in raw.records])

    @staticmethod
    def _input_files(raw: DatasetInfo) -> list[str]:
        """The manifest and every file its records name (what no report may overwrite)."""
        return [raw.source, *(f for r in raw.records for k in ("image", "label") for f in record_files(r, k) if f)]

    def run_audit(self, raw: DatasetInfo | None = None, split: dict[str, list[int]] | None = None) -> AuditReport:
        """Audit every case of the manifest: print the result, write the JSON report, return it.

        It applies no policy (``on_invalid``); :attr:`info` and :attr:`splits` do. Every rank
        may run it: the result is the same; only rank 0 prints and writes the report.

        Args:
            raw: the manifest's records (default: read them).
            split: record indices of each split (default: the configured split).
        """
        from medvision.utils.io import refuse_input_as_output

        raw = raw or self._read_manifest()
        split = split or self._split(raw).indices
        report = audit(
            raw.records,
            raw.label_names or None,
            splits=split,
            num_channels=raw.in_channels,
            spatial_dims=self.spatial_dims,
            cache_dir=self.audit_cache_dir,
            source=raw.source,
            modalities=raw.modalities,
            resample_channels=self.manifest is not None,
            require_deidentified=self.require_deidentified,
        )
        if rank_zero_only.rank == 0:
            report.print(root=Path(raw.source).parent if raw.source else None)
        if self.audit_report and rank_zero_only.rank == 0:  # DDP: one writer
            refuse_input_as_output(self.audit_report, self._input_files(raw), what="data.audit_report")
            from medvision.data.privacy import write_audit_report  # ids and paths as privacy.log_ids shows them

            write_audit_report(report, self.audit_report, self.on_invalid, self.privacy)
        self.audit_result = report
        return report

    def _load(self) -> None:
        """Read the manifest, split by subject (or read the split), write it, audit, and apply ``on_invalid``.

        The split is made before bad cases are dropped, so dropping a case never moves another
        case (or the test set) to another split.
        """
        from medvision.data.privacy import pseudonymize_records

        raw = pseudonymize_records(self._read_manifest(), self.privacy)  # ids in splits.json, the audit, batches
        case_split = self._split(raw)
        self._write_splits(case_split, raw)
        split = case_split.indices
        keep = set(range(len(raw.records)))
        label_names = raw.label_names
        if self.audit:
            report = self.run_audit(raw, split)
            label_names = report.label_names
            if not report.ok:
                if self.on_invalid == "error":
                    raise report.error(self.audit_report)
                keep -= set(report.bad_indices)
                if rank_zero_only.rank == 0:
                    where = f"; report: {self.audit_report}" if self.audit_report else ""
                    print(
                        f"data.on_invalid=skip: going on without {len(report.bad_indices)} of {len(raw.records)} "
                        f"cases ({', '.join(report.bad_cases)}){where}"
                    )
        records = [r for i, r in enumerate(raw.records) if i in keep]
        self._info = DatasetInfo(records, list(label_names), raw.modalities, raw.name, raw.source)
        self._splits = {s: [raw.records[i] for i in split[s] if i in keep] for s in SPLITS}

    @property
    def reads_dicom(self) -> bool:
        """Whether an image or label of the manifest is a DICOM file or series folder."""
        if self.source is not None:
            return False  # an embedded dataset medvision writes (NIfTI)
        if getattr(self, "_reads_dicom", None) is None:
            from medvision.data.privacy import records_are_dicom

            self._reads_dicom = records_are_dicom(self._read_manifest().records)
        return bool(self._reads_dicom)

    def input_files(self) -> list[str]:
        """The manifest and every image and label file of the cases that passed the audit."""
        return self._input_files(self.info)

    @property
    def info(self) -> DatasetInfo:
        """Records (those that passed the audit), label names and channels, read on first access."""
        if self._info is None:
            self._load()
        assert self._info is not None
        return self._info

    @property
    def label_names(self) -> list[str]:
        """Name of each label value (index = value), background first."""
        return self.info.label_names

    @property
    def num_classes(self) -> int:
        """Number of label values, background included."""
        return self.info.num_classes

    @property
    def in_channels(self) -> int:
        """Number of image channels."""
        return self.info.in_channels

    def model_kwargs(self) -> dict[str, Any]:
        """What a model must know of this data: label names, channels and the channels' modalities."""
        return {**super().model_kwargs(), "modalities": list(self.info.modalities)}

    @property
    def splits(self) -> dict[str, list[Record]]:
        """Records of each split (``train``, ``val``, ``test``), grouped by subject."""
        if self._splits is None:
            self._load()
        assert self._splits is not None
        return self._splits

    # ----------------------------------------------------------------- MedvisionDataModule
    def samples(self, split: str) -> list[Record]:
        """The records of ``split`` (``LoadImaged`` in the ``load`` transforms reads their files)."""
        return self.splits[split]

    def cache_folder(self, split: str) -> Path:
        """``data.cache_dir``, else ``<root>/.cache`` (one folder for every split: entries are keyed by content)."""
        return Path(self.cache_dir or Path(self.root or ".") / ".cache")

    def dataset(self, split: str, train: bool = False) -> Any:
        """MONAI dataset of ``split`` (cached as ``data.cache`` says); ``val`` and ``test`` must hold a case."""
        if split != "train":
            self._require(split)
        return super().dataset(split, train)

    def _require(self, split: str) -> None:
        if not self.splits[split]:
            n = len({r["subject"] for r in self.info.records})
            if self.splits_file:
                nnunet = " (nnU-Net's: the cases in neither list of the fold), or set test=false"
                raise MedvisionError(
                    f"the {split} split is empty ({n} subjects in {self.info.source}; split read from "
                    f"data.splits_file={self.splits_file}, fold {self.split_args['fold']})",
                    fix=f"list {split} cases in the splits file" + (nnunet if split == "test" else ""),
                )
            raise MedvisionError(
                f"the {split} split is empty ({n} subjects in {self.info.source})",
                fix=f"raise data.{split}_fraction or add cases",
            )
