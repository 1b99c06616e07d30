"""``medvision-predict ckpt_path=... input=<file|folder> output=<folder>``: use a trained model.

Segmentation checkpoints write one NIfTI mask per case **in the input's original space** (same
shape, same affine, same orientation, integer labels; optionally the class probabilities as a
4D NIfTI beside it). Classification checkpoints write one CSV of class probabilities.

The preprocessing is the run's own: the ``data.transforms.load`` pipeline stored in the
checkpoint (:func:`medvision.models.loading.config_from_checkpoint`), never retyped. Segmentation
runs sliding-window inference with the run's ``model.inferer`` settings, then inverts the
spatial steps of that pipeline (MONAI ``Invertd``: padding, cropping, resampling, reorienting)
on the probabilities and takes the arg-max in the original grid
(:func:`medvision.data.original_space.to_original_grid`, which also puts the test cases of a
training run back on their label files' grids for the test metrics).

Inputs: a NIfTI file, a DICOM series (a folder of ``.dcm`` files of one Series Instance UID;
read by MONAI's readers), a 2D image file, or a folder of those, or a CSV file listing cases
(one column per modality, :func:`medvision.data.records.image_rows`). A model of several
modalities reads a folder in nnU-Net's naming (``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``, one
file per modality in the model's channel order) or a CSV row per case; the mask is written on the
first modality's grid. A case lacking a modality (no ``<case>_000k`` file, an empty cell, a file
that does not exist) fails with a message naming it (``missing_modalities=error``, the default), or
with ``missing_modalities=zero`` is predicted with that channel zeroed in the network's input (after
the preprocessing: what ``model.modality_dropout`` trains for); the summary lists what was filled.
A case that fails (unreadable, wrong
dimensionality, ...) is reported with its file and problem and skipped; the other cases are still written. The
command then exits with :data:`PARTIAL_FAILURE_EXIT_CODE` (3), so that a pipeline notices; it
exits 0 only when every case was written. Outputs never overwrite an input, and an existing
output file is refused unless ``overwrite=true``; ``continue=true`` keeps the cases whose outputs
are complete (every output is written atomically, so an existing file is a finished one) and
writes only the others, e.g. after a prediction run was killed half-way.

``ckpt_path`` may also name several checkpoints (``ckpt_path=[a.ckpt,b.ckpt]``) or an ensemble
folder (:mod:`medvision.inference.ensemble`): the members' probabilities are averaged on each
input's grid, and the folder's postprocessing (:mod:`medvision.inference.postprocess`) is
applied to the masks. Segmenters average over the flips of their training (``tta=mirror``,
the default; ``tta=none``: one pass).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medvision.utils.errors import MedvisionError
from medvision.utils.privacy import Privacy

#: exit status when some cases failed and every other case was written
PARTIAL_FAILURE_EXIT_CODE = 3

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
DICOM_SUFFIX = ".dcm"
PICTURE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SUFFIXES: tuple[str, ...] = (*NIFTI_SUFFIXES, DICOM_SUFFIX, *PICTURE_SUFFIXES)


# ----------------------------------------------------------------------------- files
@dataclass
class Case:
    """One input to predict: a file, or a DICOM series (a folder of ``.dcm`` files).

    ``image`` is what the reader gets when it is not ``path`` itself: a record's list of channel
    files (nnU-Net's ``<case>_0000``, ``<case>_0001`` ...). ``missing`` names the modalities the case
    lacks (channel, modality, the file or cell looked for); ``filled`` are the channels zeroed after
    the preprocessing (``missing_modalities=zero``; their files are stand-ins).
    """

    name: str
    path: Path
    outputs: list[Path] = field(default_factory=list)
    image: Any = None
    missing: list[tuple[int, str, str]] = field(default_factory=list)
    filled: list[int] = field(default_factory=list)
    #: the case's clinical record (its row of the input CSV), for an image + clinical classifier
    clinical: dict[str, str] | None = None


@dataclass
class Member:
    """One model of a prediction (an ensemble has several): the module and its own preprocessing."""

    path: Path
    module: Any
    run_cfg: DictConfig
    problem: str
    spatial_dims: int
    transform: Any = None


def _stem(path: Path) -> str:
    for suffix in SUFFIXES:
        if path.name.lower().endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(DICOM_SUFFIX))


def _modality(modalities: Sequence[str] | None, channel: int) -> str:
    """How messages name a channel: its modality (``t2``), or ``channel <k>`` when unnamed."""
    return str(modalities[channel]) if modalities and channel < len(modalities) else f"channel {channel}"


def _csv_cases(manifest: Path, modalities: Sequence[str] | None, in_channels: int) -> list[Case]:
    """The cases of a CSV manifest (one column per modality; empty cells and absent files are missing)."""
    from medvision.data.records import image_rows

    names, rows = image_rows(manifest, list(modalities) if modalities else None)
    if modalities and len(names) != in_channels:
        raise MedvisionError(
            f"input={manifest} has {len(names)} image column(s) ({', '.join(names)}); the model takes {in_channels}",
            fix="one column per modality of the model (image_<modality>), in its channel order",
        )
    cases = []
    for case_id, files in rows:
        missing = [(k, _modality(names, k), f or f"an empty {names[k]} cell") for k, f in enumerate(files)]
        missing = [(k, m, what) for k, m, what in missing if not files[k] or not Path(files[k]).exists()]
        present = [f for f in files if f and Path(f).exists()]
        first = Path(present[0] if present else (files[0] or manifest))
        cases.append(Case(case_id, first, image=files if len(files) > 1 else files[0], missing=missing))
    return cases


def _group_channel_files(cases: list[Case], modalities: Sequence[str] | None, in_channels: int) -> list[Case]:
    """Files named ``<case>_0000``, ``<case>_0001``... (nnU-Net's naming, one file per channel) -> one case each."""
    from medvision.data.records import channel_file

    out: list[tuple[Case, dict[int, Path] | None]] = []
    groups: dict[str, dict[int, Path]] = {}
    for case in cases:
        parsed = channel_file(case.name) if case.path.is_file() else None
        if parsed is None or parsed[1] >= in_channels:
            out.append((case, None))
            continue
        name, channel = parsed
        if name not in groups:
            groups[name] = {}
            out.append((Case(name, case.path), groups[name]))
        groups[name][channel] = case.path
    for case, files in out:
        if files is None:
            continue
        first = files[min(files)]
        suffix = first.name[len(f"{case.name}_0000") :]
        expected = [files.get(k, first.parent / f"{case.name}_{k:04d}{suffix}") for k in range(in_channels)]
        case.path, case.image = first, [str(f) for f in expected]
        case.missing = [(k, _modality(modalities, k), str(f)) for k, f in enumerate(expected) if k not in files]
    return [case for case, _ in out]


def find_cases(
    source: str | Path, spatial_dims: int, modalities: Sequence[str] | None = None, in_channels: int = 1
) -> list[Case]:
    """The cases of ``input``: a file, a DICOM series folder, a folder of files and series, or a CSV file.

    With a 3D model a folder of ``.dcm`` files is one series (one case); with a 2D model each
    ``.dcm`` file is a case. A model of several named modalities groups a folder's files named
    ``<case>_0000``, ``<case>_0001``, ... (nnU-Net's naming) into one case; a CSV file lists one case
    per row, one column per modality (``image_<modality>`` or ``<modality>``, for ``modalities``).
    A case lacking a channel's file lists it in :attr:`Case.missing`.

    Args:
        source: ``input=``.
        spatial_dims: the model's 2 or 3.
        modalities: the model's channel names (``None``: unnamed).
        in_channels: the model's input channels.

    Raises:
        MedvisionError: ``input`` is missing, holds nothing to predict, or two cases share a name.
    """
    root = Path(source).expanduser()
    if not root.exists():
        raise MedvisionError(
            f"input={source} does not exist", fix="pass input=<NIfTI file | DICOM series folder | folder of cases>"
        )
    if root.is_file() and root.name.lower().endswith(".csv"):
        return _unique(_csv_cases(root, modalities, in_channels))
    if root.is_file():
        if not root.name.lower().endswith(SUFFIXES):
            raise MedvisionError(
                f"input={source} is not a file medvision-predict reads ({', '.join(SUFFIXES)})",
                fix="pass a NIfTI file, a DICOM series folder or a folder of cases",
            )
        return [Case(_stem(root), root)]
    cases: list[Case] = []
    series_here = spatial_dims == 3 and _dicom_files(root)
    if series_here:
        cases.append(Case(root.name, root))
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and spatial_dims == 3 and _dicom_files(entry):
            cases.append(Case(entry.name, entry))
        elif (
            entry.is_file()
            and entry.name.lower().endswith(SUFFIXES)
            and not entry.name.startswith(".")
            and not (series_here and entry.name.lower().endswith(DICOM_SUFFIX))
        ):
            cases.append(Case(_stem(entry), entry))
    if not cases:
        raise MedvisionError(
            f"input={source} holds no file medvision-predict reads ({', '.join(SUFFIXES)}) and no DICOM series folder",
            fix="point input= at your images",
        )
    if modalities and len(modalities) == in_channels > 1:  # a model of several named modalities
        cases = _group_channel_files(cases, modalities, in_channels)
    return _unique(cases)


def _unique(cases: list[Case]) -> list[Case]:
    """``cases``, refusing two that would write the same output."""
    seen: dict[str, Path] = {}
    for case in cases:
        if case.name in seen:
            raise MedvisionError(
                f"two inputs would write the same output name {case.name!r}: {seen[case.name]} and {case.path}",
                fix="rename one of them or predict them separately",
            )
        seen[case.name] = case.path
    return cases


# ----------------------------------------------------------------------------- model
def load_module(ckpt_path: str | Path, command: str = "medvision-predict") -> tuple[Any, DictConfig, str]:
    """The checkpoint's LightningModule (:func:`medvision.models.loading.module_from_checkpoint`),
    its run config and its problem, refusing a model this command does not use.

    Returns:
        ``(module, run_config, problem)``; problem is ``segmentation`` or ``classification``.

    Raises:
        MedvisionError: not a readable medvision checkpoint, or the checkpoint of another kind of
            model (e.g. a GAN).
    """
    from medvision.models.loading import module_from_checkpoint, problem_of

    module, saved = module_from_checkpoint(ckpt_path)
    problem = problem_of(module)
    if problem not in ("segmentation", "classification"):
        raise MedvisionError(
            f"{command} uses segmenters and classifiers, not a {type(module).__name__}",
            fix="pass the checkpoint of a segmentation or classification run",
        )
    return module, saved, problem


def spatial_dims_of(run_cfg: DictConfig, module: Any) -> int:
    """2 or 3: the dimensionality the model was trained on."""
    dims = module.hparams.get("spatial_dims") if hasattr(module, "hparams") else None
    return int(dims or OmegaConf.select(run_cfg, "data.spatial_dims", default=3))


# ----------------------------------------------------------------------------- preprocessing
def preprocessing(run_cfg: DictConfig, reader_steps: DictConfig | None = None) -> Any:
    """The run's deterministic preprocessing (``data.transforms.load``) as one MONAI ``Compose``.

    Args:
        run_cfg: the run config stored in the checkpoint.
        reader_steps: steps put first when the run's pipeline reads no file itself (classifiers
            trained on in-memory arrays; ``classifier_input`` of ``conf/predict.yaml``).
    """
    from hydra.utils import instantiate
    from monai.transforms import Compose, LoadImaged

    from medvision.data.transforms import transform_steps

    load = OmegaConf.select(run_cfg, "data.transforms.load")
    steps = transform_steps(instantiate(load, _convert_="all") if load is not None else None)
    if reader_steps is not None and not any(isinstance(t, LoadImaged) for t in steps):
        steps = transform_steps(instantiate(reader_steps, _convert_="all")) + steps
    return Compose(steps)


def check_one_series(folder: Path) -> None:
    """Refuse a DICOM folder that mixes series: MONAI's reader would stack their slices into one volume.

    Raises:
        ValueError: the ``.dcm`` files hold more than one Series Instance UID (or none).
    """
    import pydicom

    uids = {
        str(
            pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]).get(
                "SeriesInstanceUID", ""
            )
        )
        for f in _dicom_files(folder)
    }
    if len(uids) != 1 or "" in uids:
        raise ValueError(
            f"the folder holds {len(uids - {''})} DICOM series (Series Instance UIDs {sorted(uids)}), "
            "not one: put each series in its own folder"
        )


def _load_case(transform: Any, case: Case) -> dict[str, Any]:
    """Apply the preprocessing to one case; steps that also name ``label`` run on the image alone.

    The channels in :attr:`Case.filled` (missing modalities, read from a stand-in file) are then
    zeroed: 0 in the network's input, as modality dropout zeroes a channel in training.
    """
    from monai.transforms import allow_missing_keys_mode

    if case.image is None and case.path.is_dir():
        check_one_series(case.path)
    image = case.image if case.image is not None else str(case.path)
    with allow_missing_keys_mode(transform):
        data = transform({"image": image, "id": case.name})
    for channel in case.filled:
        data["image"][channel] = 0
    return data


#: what ``missing_modalities=`` accepts: a case lacking a modality fails, or that channel is zeroed
MISSING_MODALITIES: tuple[str, ...] = ("error", "zero")


def fill_missing(cases: Sequence[Case], policy: str, in_channels: int) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Apply ``missing_modalities`` to the cases that lack a modality.

    ``zero``: each missing channel reads a stand-in (the case's first present file, so every
    preprocessing step, cropping included, sees a case of the usual shape) and is zeroed after
    the preprocessing (:func:`_load_case`). ``error``, or a case with no modality at all: the
    case fails with a message naming the case, the modality, the file looked for, and the fix.

    Returns:
        ``(filled, failed)``: case -> modalities filled with zeros; case -> problem.
    """
    filled: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    for case in cases:
        if not case.missing:
            continue
        named = "; ".join(f"modality {m} is missing ({what})" for _, m, what in case.missing)
        if len(case.missing) >= in_channels:
            failed[case.name] = f"{case.name}: every modality is missing: {named}"
        elif policy != "zero":
            failed[case.name] = (
                f"{case.name}: {named}. Fix: provide the file, or pass missing_modalities=zero to predict the case "
                "with that channel zeroed (a model trained with model.modality_dropout copes with it)"
            )
        else:
            files = list(case.image)
            stand_in = str(case.path)
            for k, _, _ in case.missing:
                files[k] = stand_in
            case.image, case.filled = files, [k for k, _, _ in case.missing]
            filled[case.name] = [m for _, m, _ in case.missing]
    return filled, failed


def _check_dims(image: Any, spatial_dims: int, case: Case) -> None:
    if image.ndim - 1 != spatial_dims:
        raise ValueError(
            f"{case.path} gives a {image.ndim - 1}D image {tuple(image.shape)} after preprocessing; "
            f"the model takes {spatial_dims}D images"
        )


# ----------------------------------------------------------------------------- segmentation
def write_nifti(array: Any, affine: Any, path: Path, like: Path | None = None) -> None:
    """Write ``array`` (spatial axes first) as NIfTI with exactly ``affine``, atomically (nibabel).

    Args:
        array: the voxels; a 4th axis holds one volume per class.
        affine: voxel -> RAS world (mm), written to the sform and the qform.
        path: the ``.nii.gz`` file.
        like: a NIfTI input whose sform/qform codes are kept (default: 1, scanner coordinates,
            as for DICOM inputs).
    """
    import nibabel as nib

    qform_code, sform_code = 1, 1
    if like is not None and like.is_file() and like.name.lower().endswith(NIFTI_SUFFIXES):
        header = nib.load(like).header
        qform_code, sform_code = int(header["qform_code"]), int(header["sform_code"]) or 1
    image = nib.Nifti1Image(array, affine)
    image.set_sform(affine, code=sform_code)
    image.set_qform(affine, code=qform_code)
    image.header.set_xyzt_units("mm")
    from medvision.utils.io import atomic_output

    with atomic_output(path) as tmp:
        nib.save(image, tmp)


def _segmenter_input(member: Member, case: Case) -> tuple[dict[str, Any], Any]:
    """The member's preprocessed case and its image, checked against the model (dimensions, channels)."""
    data = _load_case(member.transform, case)
    image = data["image"]
    _check_dims(image, member.spatial_dims, case)
    in_channels = int(member.module.hparams.get("in_channels", image.shape[0]))
    if image.shape[0] != in_channels:
        raise ValueError(f"{case.path} gives {image.shape[0]} channel(s); the model takes {in_channels}")
    return data, image


def case_probabilities(members: Sequence[Member], case: Case, device: Any) -> tuple[Any, Any]:
    """Class probabilities of one case on its input's grid, averaged over the members.

    Each member preprocesses the case its own way, predicts (with its TTA), and its probabilities
    are put back on the input's grid before they are averaged.

    Returns:
        ``(probabilities, affine)``: ``(C, *original)`` float32 numpy array and the input's affine.
    """
    import numpy as np
    import torch

    from medvision.data.original_space import original_grid, to_original_grid

    total, affine = None, None
    for member in members:
        data, image = _segmenter_input(member, case)
        with torch.no_grad():
            probs = member.module.predict_step({"image": image[None].to(device)}, 0)[0].float().cpu()
        inverted = to_original_grid(probs, data, member.transform).as_tensor().numpy().astype(np.float32)
        if total is None:
            total, affine = inverted, original_grid(image)[1]
        elif inverted.shape != total.shape:
            raise ValueError(
                f"{member.path} gives probabilities of shape {inverted.shape}, another member {total.shape}"
            )
        else:
            total += inverted
    assert total is not None
    return total / len(members), affine


def _metadata_only(image: Any) -> Any:
    """An empty MetaTensor with ``image``'s metadata and recorded operations: all that inverting needs,
    so that the image's voxels can be freed before the probabilities are put back on the input's grid."""
    import torch
    from monai.data import MetaTensor

    return MetaTensor(torch.empty(0), meta=image.meta, applied_operations=image.applied_operations)


def argmax_classes(arrays: Iterable[Any], num_classes: int) -> Any:
    """``np.argmax(np.stack(arrays), 0)`` (a tie goes to the first class) as ``uint8`` (``int16`` beyond
    256 classes), holding one running maximum instead of all classes and an ``int64`` map.

    Args:
        arrays: each class's scores, one array after the other (e.g. inverted one at a time).
        num_classes: how many ``arrays`` there are.
    """
    import numpy as np

    best = mask = None
    for k, values in enumerate(arrays):
        if best is None:
            best = np.array(values, dtype=np.float32, copy=True)
            mask = np.zeros(best.shape, np.uint8 if num_classes <= 256 else np.int16)
            continue
        greater = values > best
        mask[greater] = k
        np.maximum(best, values, out=best)
        del greater
    assert mask is not None
    return mask


def budgeted_case(members: Sequence[Member], case: Case, device: Any, keep_probabilities: bool) -> tuple[Any, Any, Any]:
    """One case's mask on its input's grid within the members' ``model.inferer.memory_gb``: the mask
    :func:`case_probabilities` and its arg-max give, with fewer full-volume copies.

    The image is held compact (not as a view of the uncropped volume) and freed once predicted (the
    inversion needs only its metadata), the classes are put back on the input's grid one at a time,
    and the arg-max is kept as they come (:func:`argmax_classes`). An ensemble, or
    ``keep_probabilities``, sums each member's classes into one ``(C, *original)`` array in place
    instead. A budget that cannot hold that stage fails before the case is predicted
    (:func:`medvision.models.inference_memory.check_inversion`).

    Returns:
        ``(mask, probabilities or None, affine)``: the mask, the ``(C, *original)`` float32
        probabilities (``None`` for one model without ``keep_probabilities``) and the input's affine.
    """
    import numpy as np
    import torch

    from medvision.data.original_space import original_grid, to_original_grid
    from medvision.models.inference_memory import check_inversion

    stream = len(members) == 1 and not keep_probabilities
    total, affine, mask = None, None, None
    for member in members:
        data, image = _segmenter_input(member, case)
        data["image"] = _metadata_only(image)  # inverting needs the metadata, not the voxels
        if image.untyped_storage().nbytes() > image.numel() * image.element_size():
            image = image.clone()  # a cropped view would keep the whole uncropped volume alive
        shape, grid_affine = original_grid(data["image"])
        num_classes = len(member.module.label_names)
        budget = member.module.memory_budget
        if budget is not None:
            check_inversion(budget, num_classes, image.shape[1:], shape, keep_probabilities=not stream)
        with torch.no_grad():  # with a budget the image stays here: the windows go to the model's device
            probs = member.module.predict_step({"image": image[None] if budget else image[None].to(device)}, 0)[0]
        del image
        probs = probs.float().cpu()
        affine = grid_affine if affine is None else affine
        channels = (
            to_original_grid(probs[k : k + 1], data, member.transform).as_tensor().numpy()[0]
            for k in range(num_classes)
        )
        if stream:
            mask = argmax_classes(channels, num_classes)
            continue
        for k, channel in enumerate(channels):
            if total is None:
                total = np.empty((num_classes, *channel.shape), np.float32)
            if channel.shape != total.shape[1:]:
                raise ValueError(
                    f"{member.path} gives probabilities of shape {(num_classes, *channel.shape)}, another member "
                    f"{total.shape}"
                )
            if member is members[0]:
                total[k] = channel
            else:
                total[k] += channel
        del probs
    if total is not None:
        total /= len(members)
        mask = argmax_classes(total, total.shape[0])
    return mask, total, affine


def segment_case(
    members: Sequence[Member],
    case: Case,
    device: Any,
    save_probabilities: bool,
    postprocessing: dict[str, Any] | None = None,
) -> None:
    """Predict one case and write its mask (and probabilities) in the input's original space.

    A member with ``model.inferer.memory_gb`` (``medvision-predict inferer.memory_gb=...``) takes the
    budgeted road (:func:`budgeted_case`): the same mask, with fewer full-volume copies.
    """
    import numpy as np

    from medvision.inference.postprocess import apply_postprocessing

    if any(getattr(m.module, "memory_budget", None) is not None for m in members):
        mask, probabilities, original_affine = budgeted_case(members, case, device, save_probabilities)
    else:
        probabilities, original_affine = case_probabilities(members, case, device)
        dtype = np.uint8 if probabilities.shape[0] <= 256 else np.int16
        mask = probabilities.argmax(0).astype(dtype)
    mask = apply_postprocessing(mask, postprocessing)
    write_nifti(mask, original_affine, case.outputs[0], like=case.path)
    if save_probabilities:
        write_nifti(np.moveaxis(probabilities, 0, -1), original_affine, case.outputs[1], like=case.path)


# ----------------------------------------------------------------------------- classification
def classify_case(members: Sequence[Member], case: Case, device: Any) -> list[float]:
    """Class (or label) probabilities of one case, averaged over the members."""
    import torch

    from medvision.inference.clinical import clinical_input, takes_clinical

    total: list[float] | None = None
    for member in members:
        module = member.module
        image = _load_case(member.transform, case)["image"]
        in_channels = int(module.hparams.get("in_channels", image.shape[0]))
        if image.shape[0] == 1 and in_channels == 3:  # grey file, model trained on grey repeated to RGB
            image = image.repeat(3, *([1] * (image.ndim - 1)))
        if image.shape[0] != in_channels:
            raise ValueError(f"{case.path} has {image.shape[0]} channels; the model takes {in_channels}")
        _check_dims(image, member.spatial_dims, case)
        batch = {"image": torch.as_tensor(image)[None].float().to(device)}
        if case.clinical is not None and takes_clinical(module):  # the record, with the training statistics
            batch["clinical"] = clinical_input(module, case).to(device)
        with torch.no_grad():
            scores = module.predict_step(batch, 0)
        values = [float(v) for v in scores[0].cpu().tolist()]
        total = values if total is None else [a + b for a, b in zip(total, values, strict=True)]
    assert total is not None
    return [v / len(members) for v in total]


def probabilities_csv(
    rows: Sequence[tuple[Case, list[float]]], label_names: Sequence[str], task: str, privacy: Privacy | None = None
) -> str:
    """CSV text: ``case,input,predicted,p_<label>...`` (multi-label: ``;``-joined positives at 0.5).

    ``privacy`` (``privacy.log_ids``): ``case`` is the case's name, its pseudonym, or its number
    (``none``); ``input`` its path, or ``<private:...>``.
    """
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["case", "input", "predicted", *(f"p_{name}" for name in label_names)])
    for k, (case, probs) in enumerate(rows):
        if task == "multilabel":
            predicted = ";".join(n for n, p in zip(label_names, probs, strict=True) if p >= 0.5)
        else:
            predicted = label_names[max(range(len(probs)), key=probs.__getitem__)]
        shown = [case.name, str(case.path)]
        if privacy is not None and privacy.active:
            shown = [_shown_case(privacy, case.name, k), privacy.token(str(case.path))]
        writer.writerow([*shown, predicted, *(f"{p:.6g}" for p in probs)])
    return out.getvalue()


# ----------------------------------------------------------------------------- what outputs show
def input_privacy(cfg: DictConfig, cases: Sequence[Case]) -> Privacy:
    """The prediction's ``privacy`` settings (``auto``: ``pseudonym`` when an input is DICOM)."""
    from medvision.data.privacy import dicom_files

    node = cfg.get("privacy")
    return Privacy.from_config(node, from_dicom=any(dicom_files(c.path) for c in cases))


def _shown_case(privacy: Privacy, name: str, number: int) -> str:
    """A case as the CSV and summary show it: its name, its pseudonym, or ``case_<number>`` (``none``)."""
    shown = privacy.case_id(name)
    return shown if shown is not None else f"case_{number:04d}"


def shown_summary(summary: dict[str, Any], cases: Sequence[Case], cfg: DictConfig, privacy: Privacy) -> dict[str, Any]:
    """``predict_summary.json``'s content with case names and input paths as ``privacy`` shows them."""
    if not privacy.active:
        return summary
    number = {c.name: k for k, c in enumerate(cases)}
    name = lambda case: _shown_case(privacy, case, number.get(case, len(number)))  # noqa: E731
    paths = [str(cfg.input), str(Path(cfg.input).expanduser().resolve())] + [str(c.path) for c in cases]
    out = dict(summary)
    out["input"] = privacy.token(str(cfg.input))
    out["written"] = {name(c): [privacy.token(f) for f in files] for c, files in summary["written"].items()}
    out["kept"] = [name(c) for c in summary["kept"]]
    out["failed"] = {name(c): privacy.scrub(message, paths) for c, message in summary["failed"].items()}
    if "filled" in summary:
        out["filled"] = {name(c): value for c, value in summary["filled"].items()}
    return out


# ----------------------------------------------------------------------------- the command
@dataclass
class PredictionSummary:
    """What a prediction wrote and what it skipped."""

    written: dict[str, list[str]]
    failed: dict[str, str]
    csv: str | None = None
    #: cases whose outputs were complete already (``continue=true``): kept, not predicted again
    kept: list[str] = field(default_factory=list)
    #: cases predicted with missing modalities zeroed (``missing_modalities=zero``): case -> modalities
    filled: dict[str, list[str]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 when every case was written, :data:`PARTIAL_FAILURE_EXIT_CODE` otherwise."""
        return PARTIAL_FAILURE_EXIT_CODE if self.failed else 0


def _classifier_input(cfg: DictConfig, run_cfg: DictConfig, spatial_dims: int) -> DictConfig | None:
    """``cfg.classifier_input`` with ``${data...}`` resolved against the run's data config and
    ``${train_size}`` = the run's ``data.size`` on each spatial axis (-1: keep the file's size)."""
    if not cfg.get("classifier_input"):
        return None
    size = OmegaConf.select(run_cfg, "data.size", default=None)
    train_size = [int(size) if size else -1] * spatial_dims
    node = OmegaConf.create(
        {
            "data": run_cfg.get("data") or {},
            "train_size": train_size,
            "classifier_input": OmegaConf.to_container(cfg.classifier_input, resolve=False),
        }
    )
    return node.classifier_input


def _root_cause(err: BaseException) -> str:
    """``Type: first line`` of the innermost cause (MONAI wraps errors in "applying transform ..."); a
    user mistake found in a case (:class:`MedvisionError`, e.g. a memory budget too small) keeps its fix."""
    while err.__cause__ is not None:
        err = err.__cause__
    if isinstance(err, MedvisionError) and err.fix:
        return f"{type(err).__name__}: {err.message} (fix: {err.fix})"
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _plan_outputs(cases: list[Case], output: Path, problem: str, cfg: DictConfig) -> tuple[Path | None, list[Case]]:
    """Set every case's output files; refuse outputs that are inputs or exist (unless ``overwrite``
    or ``continue``).

    Returns:
        The CSV file (classification) and the cases whose outputs are complete already
        (``continue=true``: they are kept and not predicted again).
    """
    from medvision.utils.io import refuse_input_as_output

    inputs = [c.path for c in cases] + [
        Path(f) for c in cases if isinstance(c.image, (list, tuple)) for f in c.image if f
    ]
    refuse_input_as_output(output, [cfg.input, *inputs], what="output")
    csv_path = None
    if problem == "segmentation":
        for case in cases:
            case.outputs = [output / f"{case.name}.nii.gz"]
            if cfg.save_probabilities:
                case.outputs.append(output / f"{case.name}_probabilities.nii.gz")
        planned = [p for c in cases for p in c.outputs]
    else:
        csv_path = output / cfg.csv_name
        for case in cases:
            case.outputs = [csv_path]
        planned = [csv_path]
    for path in planned:
        refuse_input_as_output(path, inputs, what="output")
    if cfg.get("summary"):
        refuse_input_as_output(cfg.summary, inputs, what="summary")
    # every output is written atomically: a file that exists is complete
    complete = [c for c in cases if all(p.exists() for p in c.outputs)]
    if cfg.get("continue") and not cfg.overwrite:
        for path in planned:  # what a killed run left of a file it was writing (medvision.utils.io.atomic_output)
            for stale in path.parent.glob(f".{path.name}.*.tmp*"):
                stale.unlink(missing_ok=True)
        return csv_path, complete
    existing = [str(p) for p in planned if p.exists()]
    if existing and not cfg.overwrite:
        raise MedvisionError(
            f"{len(existing)} output file(s) exist already (e.g. {existing[0]}); they are not overwritten",
            fix="choose another output=<folder>, pass continue=true to write only the missing cases, "
            "or overwrite=true to replace them",
        )
    return csv_path, []


def load_members(cfg: DictConfig, command: str = "medvision-predict") -> tuple[list[Member], dict[str, Any] | None]:
    """The model(s) of ``cfg.ckpt_path`` (a checkpoint, a list, an ensemble folder), each with its
    preprocessing and TTA, and the ensemble folder's postprocessing decision.

    Raises:
        MedvisionError: a member is missing or unreadable, or the members differ in problem or labels.
    """
    from medvision.data.transforms import tta_axes
    from medvision.inference.ensemble import check_members, member_checkpoints, read_folder
    from medvision.inference.postprocess import DECISION_FILE
    from medvision.models.inference_memory import budget_gb

    paths, folder = member_checkpoints(cfg.ckpt_path)
    members: list[Member] = []
    for path in paths:
        module, run_cfg, problem = load_module(path, command)
        members.append(Member(path, module, run_cfg, problem, spatial_dims_of(run_cfg, module)))
    check_members([(m.path, m.problem, list(m.module.label_names)) for m in members])
    for m in members:
        if m.problem == "segmentation":
            if cfg.get("inferer"):  # a null (inferer.memory_gb: null) keeps the run's own setting
                overrides = OmegaConf.to_container(cfg.inferer, resolve=True)
                m.module.inferer.update({k: v for k, v in overrides.items() if v is not None})
                budget_gb(m.module.inferer.get("memory_gb"))  # a bad inferer.memory_gb fails here, before any case
            augment = OmegaConf.select(m.run_cfg, "data.transforms.augment")
            try:
                m.module.tta_axes = tta_axes(
                    cfg.get("tta"), OmegaConf.to_container(augment) if augment is not None else None
                )
            except ValueError as err:
                raise MedvisionError(str(err), fix="tta=mirror or tta=none") from None
        reader_steps = _classifier_input(cfg, m.run_cfg, m.spatial_dims) if m.problem == "classification" else None
        m.transform = preprocessing(m.run_cfg, reader_steps)
    return members, read_folder(folder, DECISION_FILE)


def predict(cfg: DictConfig) -> PredictionSummary:
    """Predict every case of ``cfg.input`` with the model(s) of ``cfg.ckpt_path`` into ``cfg.output``.

    Args:
        cfg: the composed ``predict`` config (``conf/predict.yaml``).

    Returns:
        The cases written (case -> files), the cases skipped (case -> problem) and, with
        ``continue=true``, the cases kept; also written to ``cfg.summary`` as JSON.

    Raises:
        MedvisionError: a usage problem found before any case is predicted (no checkpoint, no
            input, outputs that exist or are inputs, an ensemble of different problems).
    """
    from medvision.inference.clinical import attach_clinical, takes_clinical
    from medvision.utils.io import atomic_write_json, atomic_write_text

    for key in ("ckpt_path", "input", "output"):
        if OmegaConf.is_missing(cfg, key) or not cfg.get(key):
            raise MedvisionError(
                f"medvision-predict needs {key}=",
                fix="medvision-predict ckpt_path=<run>/checkpoints/best.ckpt input=<file|folder> output=<folder>",
            )
    if cfg.get("print_config"):
        from medvision.utils.printing import print_config_tree

        print_config_tree(cfg)
    policy = str(cfg.get("missing_modalities") or "error")
    if policy not in MISSING_MODALITIES:
        raise MedvisionError(
            f"missing_modalities={policy!r} is not one of {', '.join(MISSING_MODALITIES)}",
            fix="missing_modalities=error (a case lacking a modality fails) or missing_modalities=zero "
            "(that channel is zeroed)",
        )
    members, postprocessing = load_members(cfg)
    problem, spatial_dims = members[0].problem, members[0].spatial_dims
    hparams = members[0].module.hparams
    in_channels = int(hparams.get("in_channels", 1))
    # the model's channel names (segmenters keep them); else the columns its training read
    modalities = hparams.get("modalities") or OmegaConf.select(members[0].run_cfg, "data.image_columns", default=None)
    cases = find_cases(cfg.input, spatial_dims, modalities, in_channels)
    privacy = input_privacy(cfg, cases)  # what the CSV and the summary show of the cases
    if any(takes_clinical(m.module) for m in members):  # each case's clinical record: its row of the CSV
        number = {c.name: k for k, c in enumerate(cases)}
        attach_clinical(cases, cfg.input, members, shown=lambda name: _shown_case(privacy, name, number[name]))
    privacy.scrub_hydra_files(cfg.paths.output_dir, {"input": str(cfg.input)})  # .hydra/ names the input
    output = Path(cfg.output).expanduser()
    csv_path, complete = _plan_outputs(cases, output, problem, cfg)
    output.mkdir(parents=True, exist_ok=True)
    kept = [c.name for c in complete]
    todo = [c for c in cases if c.name not in set(kept)]
    filled, unusable = fill_missing(todo, policy, in_channels)
    _report_filled(filled, members)
    todo = [c for c in todo if c.name not in unusable]
    device = _device(cfg.device)
    for m in members:
        m.module.to(device)
    rows, failed = _predict_cases(cfg, members, todo, problem, postprocessing)
    failed = {**unusable, **failed}
    written = {c.name: [str(p) for p in c.outputs] for c in todo if c.name not in failed}
    module = members[0].module
    if csv_path is not None and rows:
        atomic_write_text(
            csv_path,
            probabilities_csv(rows, list(module.label_names), getattr(module, "task", "multiclass"), privacy),
        )
    filled = {case: names for case, names in filled.items() if case in written}
    summary = PredictionSummary(written, failed, str(csv_path) if csv_path is not None and rows else None, kept, filled)
    if cfg.get("summary"):
        atomic_write_json(
            cfg.summary,
            shown_summary(
                {
                    "members": [str(m.path) for m in members],
                    "tta": cfg.get("tta"),
                    "postprocessing": postprocessing,
                    "input": str(cfg.input),
                    "output": str(output),
                    "written": written,
                    "kept": kept,
                    "failed": failed,
                    "missing_modalities": policy,
                    "filled": filled,
                },
                cases,
                cfg,
                privacy,
            ),
        )
    _print_summary(summary, len(cases), output)
    return summary


def _predict_cases(
    cfg: DictConfig,
    members: list[Member],
    cases: list[Case],
    problem: str,
    postprocessing: dict[str, Any] | None,
) -> tuple[list[tuple[Case, list[float]]], dict[str, str]]:
    """Predict case by case under a progress bar; a failing case is recorded and skipped.

    Returns:
        The classification rows (case, probabilities) and the failed cases (name -> problem).
    """
    from rich.progress import track

    from medvision.utils.errors import show_tracebacks

    device = next(members[0].module.parameters()).device
    rows: list[tuple[Case, list[float]]] = []
    failed: dict[str, str] = {}
    for case in track(cases, description=f"predicting {len(cases)} case(s)", console=_console(), transient=True):
        try:
            if problem == "segmentation":
                segment_case(members, case, device, bool(cfg.save_probabilities), postprocessing)
            else:
                rows.append((case, classify_case(members, case, device)))
        except Exception as err:
            if show_tracebacks():
                raise
            failed[case.name] = f"{case.path}: {_root_cause(err)}"
    return rows, failed


def _report_filled(filled: dict[str, list[str]], members: Sequence[Member]) -> None:
    """Say which modality of which case is zeroed, and warn when a model never saw a zeroed channel."""
    if not filled:
        return
    from rich.markup import escape

    console = _console()
    for name, modalities in filled.items():
        console.print(
            f"[yellow]filled[/] {escape(name)}: {escape(', '.join(modalities))} missing, zeroed "
            "(missing_modalities=zero)",
            highlight=False,
        )
    untrained = [m.path for m in members if not float(m.module.hparams.get("modality_dropout", 0) or 0)]
    for path in untrained:
        console.print(
            f"[yellow]warning[/] {escape(str(path))} was trained without modality dropout "
            "(model.modality_dropout=0): a zeroed modality is new to it and may spoil its predictions",
            highlight=False,
        )


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def _print_summary(summary: PredictionSummary, total: int, output: Path) -> None:
    from rich.markup import escape

    console = _console()
    kept = f" ({len(summary.kept)} complete already, kept)" if summary.kept else ""
    console.print(
        f"medvision-predict: {len(summary.written)} of {total} case(s) written to {escape(str(output))}{kept}",
        highlight=False,
    )
    for name, problem in summary.failed.items():
        console.print(f"[bold red]skipped[/] {escape(name)}: {escape(problem)}", highlight=False)
