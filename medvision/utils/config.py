"""Where the config tree lives, composing it outside the CLI, and configs saved in checkpoints."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: key under which a run's resolved config is stored inside each of its checkpoints
CHECKPOINT_CONFIG_KEY = "medvision_config"

# ${medvision.home:} = $MEDVISION_HOME or the launch folder. A resolver rather than
# ${oc.env:MEDVISION_HOME,${hydra:runtime.cwd}}: oc.env resolves its default eagerly, and Hydra
# resolves the sweep dir of `-m` before hydra.runtime exists.
if not OmegaConf.has_resolver("medvision.home"):
    OmegaConf.register_new_resolver("medvision.home", lambda: os.environ.get("MEDVISION_HOME") or os.getcwd())
# ${medvision.precision:${trainer.accelerator}}: bf16-mixed on a CPU with bfloat16 matrix units, else
# 32-true (medvision/utils/precision.py); torch is imported only when a run resolves it
if not OmegaConf.has_resolver("medvision.precision"):

    def _precision(accelerator: str = "cpu") -> str:
        from medvision.utils.precision import default_precision

        return default_precision(accelerator)

    OmegaConf.register_new_resolver("medvision.precision", _precision)


def config_dir() -> Path:
    """The folder holding ``train.yaml``.

    In an installed wheel the tree ships as package data (``medvision/conf``); in a source
    checkout (editable install) it is ``conf/`` at the repository root.
    """
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"medvision's config tree (train.yaml) was not found beside {here}")


#: loggers of libraries that talk at INFO level about their own import, not about the run.
#: ``alembic``: MONAI's ``import monai`` loads ``monai.apps.auto3dseg``, which imports Optuna when
#: it is installed (the Hydra Optuna sweeper brings it), which imports alembic, whose plugin
#: registry logs seven "setup plugin alembic...." lines at INFO; under Hydra's job logging (root
#: at INFO) they were printed at the start of every run. Their warnings and errors still show.
#: ``monai.data.nvimgcodec_pydicom_plugin``: every ``LoadImage`` built without a reader makes
#: MONAI's DICOM reader try a GPU decoder plugin and log (WARNING) and warn that it is not there,
#: on machines that read no DICOM at all; pydicom's own decoders are used, nothing to act on.
#: ``mlflow``: ``logger=mlflow`` creating its SQLite store logs each table migration at INFO.
#: ``LoadImage``: a file that is not NIfTI, refused by medvision's NIfTI reader, is read by MONAI's
#: other readers after an INFO line saying so (:mod:`medvision.data.nifti`).
QUIET_LOGGERS: dict[str, int] = {
    "alembic": 30,
    "mlflow": 30,
    "monai.data.nvimgcodec_pydicom_plugin": 40,
    "LoadImage": 30,
}


class _DropAdverts:
    """A logging filter dropping Lightning's advertisement (since 2.6: "Tip: ... try installing
    litlogger", at every ``Trainer``), keeping its other messages (devices, strategy, ...)."""

    def filter(self, record: Any) -> bool:
        return "litlogger" not in str(record.msg)


def quiet_library_loggers() -> None:
    """Raise each logger of :data:`QUIET_LOGGERS` to its level (medvision's, Lightning's and
    Hydra's loggers are untouched) and drop MONAI's matching GPU-decoder warning."""
    import logging
    import warnings

    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdverts) for f in rank_zero.filters):
        rank_zero.addFilter(_DropAdverts())
    warnings.filterwarnings(
        "ignore", message="NvImgCodecPydicomReader: nvImageCodec decoder plugin", category=UserWarning
    )


def hydra_main(config_name: str, task: Any) -> None:
    """Run ``task(cfg)`` as a Hydra command line on the primary config ``config_name``.

    The one place every console script (``medvision-train``, ``-eval``, ``-predict``, ...) gets
    its Hydra CLI from: the shipped config tree, Hydra 1.3 semantics, a fast ``--help``
    (:func:`medvision.utils.hydra_speed.share_config_store`) and no import chatter of other
    libraries in the run's log (:func:`quiet_library_loggers`).

    Args:
        config_name: ``train``, ``eval``, ``predict``, ``export``, ``generate`` or ``gan_augment``.
        task: the function Hydra calls with the composed config.
    """
    import hydra

    from medvision.utils.hydra_speed import share_config_store

    quiet_library_loggers()
    share_config_store()
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=config_name)(task)()


def compose(
    overrides: list[str] | None = None,
    config_name: str = "train",
    output_dir: str | Path | None = None,
) -> DictConfig:
    """Compose the config tree as the CLI would, for tests, notebooks and scripts.

    Args:
        overrides: Hydra override strings, e.g. ``["experiment=synthetic_seg3d", "seed=1"]``.
        config_name: ``train``, ``eval`` (or another primary config).
        output_dir: the run's output folder (the CLI's Hydra run dir); created if missing.

    Returns:
        The composed config with Hydra's own node removed; ``HydraConfig`` is set so that
        ``${hydra:...}`` interpolations resolve.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    overrides = list(overrides or [])
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        overrides.append(f"hydra.run.dir={Path(output_dir).resolve()}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    hydra_cfg = cfg.hydra
    OmegaConf.set_readonly(hydra_cfg, False)
    hydra_cfg.runtime.output_dir = str(Path(hydra_cfg.run.dir).resolve())
    HydraConfig.instance().set_config(cfg)
    with_hydra = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(with_hydra, dict)
    with_hydra.pop("hydra")
    out = OmegaConf.create(with_hydra)
    OmegaConf.set_struct(out, True)
    return out


def resolved_container(cfg: DictConfig) -> dict[str, Any]:
    """The config with every interpolation resolved, as plain Python containers."""
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(data, dict)
    return data


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{dotted key: value}`` (``{"model": {"optimizer": {"lr": 1e-3}}}`` ->
    ``{"model.optimizer.lr": 1e-3}``); lists and other values are leaves.

    Args:
        node: a plain config container (``resolved_container``, a loaded ``config_resolved.yaml``).
        prefix: the dotted key of ``node`` itself (``""`` for the root).
    """
    if isinstance(node, Mapping) and (node or not prefix):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}
