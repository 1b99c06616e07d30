"""Published MedMNIST v2 test ACC/AUC, as data with their sources.

Paper: Yang et al., "MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical
image classification", Scientific Data 10:41 (2023), doi:10.1038/s41597-022-01721-8;
Table 3 (2D sets) and Table 4 (3D sets); each number is the mean of at least three runs.

``verified`` is ``True`` only for a number read in the paper's own table. The paper's table
text was not reachable from this project's sources, so every number below is ``verified=False``:
each was read in a public repository that quotes the paper's table, named in ``seen_in``.
Numbers for which only conflicting quotes were found are left out rather than guessed.
Fill the gaps (and flip ``verified``) from the paper itself.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER = "Yang et al., MedMNIST v2, Scientific Data 10:41 (2023)"

#: experiment (conf/experiment/medmnist/<name>) -> the paper's model name
MODELS: dict[str, str] = {
    "resnet18_28": "ResNet-18 (28)",
    "resnet18_224": "ResNet-18 (224)",
    "resnet50_28": "ResNet-50 (28)",
    "resnet50_224": "ResNet-50 (224)",
    "resnet18_3d": "ResNet-18 + 3D",
    "resnet18_acs": "ResNet-18 + ACS",
    "resnet50_3d": "ResNet-50 + 3D",
}


@dataclass(frozen=True)
class Published:
    """One published result.

    Args:
        flag: MedMNIST set.
        model: key of :data:`MODELS`.
        auc: test AUC (``None``: not available from a source read).
        acc: test ACC (``None``: not available from a source read).
        source: where the paper publishes it.
        seen_in: the source actually read.
        verified: read in the paper's own table.
    """

    flag: str
    model: str
    auc: float | None
    acc: float | None
    source: str
    seen_in: str
    verified: bool = False


T3, T4 = f"{PAPER}, Table 3", f"{PAPER}, Table 4"
_HABIB = (
    "github.com/habib-analyst/MedMNIST_v2_Reproducibility_Benchmark configs/benchmark-references.json"
    " (from medmnist.com/v2)"
)
_PATH = "a PathMNIST literature review quoting the paper (public repository, found by search)"
_PNEU = "PneumoniaMNIST course notes quoting 'MedMNIST v2, Tabla 3' (public repository, found by search)"
_BREAST = "BreastMNIST prediction-artifact verification record citing Table 3 (public repository)"
_BREAST2 = "BreastMNIST quantum-classifier README quoting the official references (public repository)"
_CHEST = "ChestMNIST README quoting 'MedMNIST v2 Table 3' AUCs (public repository)"
_CHEST_CARD = "ChestMNIST model card quoting medmnist.com (public repository)"
_ORGAN3D = "OrganMNIST3D analysis script's PUBLISHED_BASELINES citing Yang et al. 2023 (public repository)"


def _p(flag: str, model: str, auc: float | None, acc: float | None, seen_in: str, table: str = T3) -> Published:
    return Published(flag, model, auc, acc, table, seen_in)


PUBLISHED: list[Published] = [
    _p("pathmnist", "resnet18_28", 0.983, 0.907, _PATH),
    _p("pathmnist", "resnet50_28", 0.990, 0.911, _PATH),
    _p("pathmnist", "resnet50_224", 0.989, 0.892, _HABIB),
    _p("chestmnist", "resnet18_28", 0.768, None, _CHEST),
    _p("chestmnist", "resnet18_224", 0.773, 0.947, _CHEST_CARD),
    _p("chestmnist", "resnet50_224", 0.773, 0.948, _HABIB),
    _p("dermamnist", "resnet50_224", 0.912, 0.731, _HABIB),
    _p("octmnist", "resnet50_224", 0.958, 0.776, _HABIB),
    _p("pneumoniamnist", "resnet18_28", 0.944, 0.854, _PNEU),
    _p("pneumoniamnist", "resnet18_224", 0.956, 0.864, _PNEU),
    _p("pneumoniamnist", "resnet50_28", 0.948, 0.854, _PNEU),
    _p("pneumoniamnist", "resnet50_224", 0.962, 0.884, _PNEU),
    _p("retinamnist", "resnet50_224", 0.716, 0.511, _HABIB),
    _p("breastmnist", "resnet18_28", 0.901, 0.863, _BREAST),
    _p("breastmnist", "resnet50_28", 0.857, 0.812, _BREAST2),
    _p("breastmnist", "resnet50_224", 0.866, 0.842, _HABIB),
    _p("bloodmnist", "resnet50_224", 0.997, 0.950, _HABIB),
    _p("tissuemnist", "resnet50_224", 0.932, 0.680, _HABIB),
    _p("organamnist", "resnet50_224", 0.998, 0.947, _HABIB),
    _p("organcmnist", "resnet50_224", 0.993, 0.911, _HABIB),
    _p("organsmnist", "resnet50_224", 0.975, 0.785, _HABIB),
    _p("organmnist3d", "resnet18_3d", 0.996, 0.907, _ORGAN3D, T4),
    _p("organmnist3d", "resnet18_acs", 0.994, 0.900, _ORGAN3D, T4),
    _p("organmnist3d", "resnet50_3d", 0.994, 0.883, _HABIB, T4),
    _p("nodulemnist3d", "resnet50_3d", 0.875, 0.847, _HABIB, T4),
    _p("fracturemnist3d", "resnet50_3d", 0.725, 0.494, _HABIB, T4),
    _p("adrenalmnist3d", "resnet50_3d", 0.828, 0.745, _HABIB, T4),
    _p("vesselmnist3d", "resnet50_3d", 0.907, 0.918, _HABIB, T4),
    _p("synapsemnist3d", "resnet50_3d", 0.851, 0.795, _HABIB, T4),
]


def published(flag: str, model: str) -> Published | None:
    """The published result of ``model`` on ``flag``, or ``None``."""
    for entry in PUBLISHED:
        if entry.flag == flag and entry.model == model:
            return entry
    return None


def published_for(flag: str) -> list[Published]:
    """Every published result on ``flag``, in :data:`MODELS` order."""
    order = list(MODELS)
    return sorted((e for e in PUBLISHED if e.flag == flag), key=lambda e: order.index(e.model))
