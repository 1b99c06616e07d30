"""The MedMNIST v2 / MedMNIST+ catalogue as data: 12 2D and 6 3D sets.

Source: ``medmnist/info.py`` of the official package, version 3.0.2
(github.com/MedMNIST/MedMNIST, commit 3bb56be; MedMNIST+ files on Zenodo record 10519652,
doi:10.5281/zenodo.10519652). Task types, label names (index = label value), channels,
split sizes and the MD5 of every official file are copied as facts from there. 2D sets come in 28, 64, 128
and 224 pixels, 3D sets in 28 and 64 voxels. Files are ``<flag>.npz`` (28) or
``<flag>_<size>.npz``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from medvision.utils.errors import MedvisionError

#: Zenodo record holding every MedMNIST+ file (v3.0, CC BY 4.0 except DermaMNIST: CC BY-NC 4.0)
ZENODO_RECORD = "10519652"
#: the sizes of the official files (``data.size``): 2D sets come in all four, 3D sets in 28 and 64
MedMNISTSize = Literal[28, 64, 128, 224]
SIZES_2D: tuple[int, ...] = get_args(MedMNISTSize)
SIZES_3D: tuple[int, ...] = (28, 64)
#: the MedMNIST sets (``data.flag``), in catalogue order; :data:`INFO` holds one entry for each
MedMNISTFlag = Literal[
    "pathmnist",
    "chestmnist",
    "dermamnist",
    "octmnist",
    "pneumoniamnist",
    "retinamnist",
    "breastmnist",
    "bloodmnist",
    "tissuemnist",
    "organamnist",
    "organcmnist",
    "organsmnist",
    "organmnist3d",
    "nodulemnist3d",
    "adrenalmnist3d",
    "fracturemnist3d",
    "vesselmnist3d",
    "synapsemnist3d",
]
FLAGS: tuple[str, ...] = get_args(MedMNISTFlag)

#: the package's task names -> ours (RetinaMNIST's ordinal regression is trained and scored
#: as multi-class, as the MedMNIST v2 benchmark does)
_TASKS = {
    "binary-class": "binary",
    "multi-class": "multiclass",
    "ordinal-regression": "multiclass",
    "multi-label, binary-class": "multilabel",
}


@dataclass(frozen=True)
class MedMNISTInfo:
    """One MedMNIST set.

    Args:
        flag: file stem (``pathmnist``).
        task: the package's task name (``multi-class``, ``binary-class``, ...).
        labels: label names, index = label value (multi-label: one per column).
        n_channels: 1 (grey) or 3 (RGB).
        n_samples: (train, val, test) sizes.
        md5: MD5 of the official file per size.
        spatial_dims: 2 or 3.
    """

    flag: str
    task: str
    labels: tuple[str, ...]
    n_channels: int
    n_samples: tuple[int, int, int]
    md5: dict[int, str]
    spatial_dims: int = 2

    @property
    def our_task(self) -> str:
        """``binary``, ``multiclass`` or ``multilabel``."""
        return _TASKS[self.task]

    @property
    def sizes(self) -> tuple[int, ...]:
        """The sizes the official files come in."""
        return SIZES_3D if self.spatial_dims == 3 else SIZES_2D

    def filename(self, size: int) -> str:
        """Official file name: ``pathmnist.npz`` (28), ``pathmnist_64.npz``, ..."""
        self.check_size(size)
        return f"{self.flag}.npz" if size == 28 else f"{self.flag}_{size}.npz"

    def url(self, size: int) -> str:
        """Download address of the official file on Zenodo."""
        return f"https://zenodo.org/records/{ZENODO_RECORD}/files/{self.filename(size)}?download=1"

    def check_size(self, size: int) -> None:
        """Raise a :class:`MedvisionError` if ``size`` is not one the set comes in."""
        if size not in self.sizes:
            raise MedvisionError(
                f"{self.flag} comes in sizes {list(self.sizes)}, not {size}",
                fix=f"set data.size to one of {list(self.sizes)}",
            )


_ORGANS = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)


def _i(
    flag: str, task: str, labels: Sequence[str], ch: int, n: tuple[int, int, int], md5s: str, dims: int = 2
) -> MedMNISTInfo:
    sizes = SIZES_3D if dims == 3 else SIZES_2D
    return MedMNISTInfo(flag, task, tuple(labels), ch, tuple(n), dict(zip(sizes, md5s.split(), strict=True)), dims)


MC, BC, ML = "multi-class", "binary-class", "multi-label, binary-class"
#: every MedMNIST v2/+ set by flag
INFO: dict[str, MedMNISTInfo] = {
    i.flag: i
    for i in [
        _i(
            "pathmnist",
            MC,
            [
                "adipose",
                "background",
                "debris",
                "lymphocytes",
                "mucus",
                "smooth muscle",
                "normal colon mucosa",
                "cancer-associated stroma",
                "colorectal adenocarcinoma epithelium",
            ],
            3,
            (89996, 10004, 7180),
            "a8b06965200029087d5bd730944a56c1 55aa9c1e0525abe5a6b9d8343a507616 ac42d08fb904d92c244187169d1fd1d9 2c51a510bcdc9cf8ddb2af93af1eadec",
        ),
        _i(
            "chestmnist",
            ML,
            [
                "atelectasis",
                "cardiomegaly",
                "effusion",
                "infiltration",
                "mass",
                "nodule",
                "pneumonia",
                "pneumothorax",
                "consolidation",
                "edema",
                "emphysema",
                "fibrosis",
                "pleural",
                "hernia",
            ],
            1,
            (78468, 11219, 22433),
            "02c8a6516a18b556561a56cbdd36c4a8 9de6cd0b934ebb5b7426cfba5efbae16 db107e5590b27930b62dbaf558aebee3 45bd33e6f06c3e8cdb481c74a89152aa",
        ),
        _i(
            "dermamnist",
            MC,
            [
                "actinic keratoses and intraepithelial carcinoma",
                "basal cell carcinoma",
                "benign keratosis-like lesions",
                "dermatofibroma",
                "melanoma",
                "melanocytic nevi",
                "vascular lesions",
            ],
            3,
            (7007, 1003, 2005),
            "0744692d530f8e62ec473284d019b0c7 b70a2f5635c6199aeaa28c31d7202e1f 2defd784463fa5243564e855ed717de1 8974907d8e169bef5f5b96bc506ae45d",
        ),
        _i(
            "octmnist",
            MC,
            ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
            1,
            (97477, 10832, 1000),
            "c68d92d5b585d8d81f7112f81e2d0842 e229e9440236b774d9f0dfef9d07bdaf 0a97e76651ace45c5d943ee3f65b63ae abc493b6d529d5de7569faaef2773ba3",
        ),
        _i(
            "pneumoniamnist",
            BC,
            ["normal", "pneumonia"],
            1,
            (4708, 524, 624),
            "28209eda62fecd6e6a2d98b1501bb15f 8f4eceb4ccffa70c672198ea285246c6 05b46931834c231683c68f40c47b2971 d6a3c71de1b945ea11211b03746c1fe1",
        ),
        _i(
            "retinamnist",
            "ordinal-regression",
            ["0", "1", "2", "3", "4"],
            3,
            (1080, 120, 400),
            "bd4c0672f1bba3e3a89f0e4e876791e4 afda852cc34dcda56f86ad2b2457dbcc e48e916a24454daf90583d4e6efb1a18 eae7e3b6f3fcbda4ae613ebdcbe35348",
        ),
        _i(
            "breastmnist",
            BC,
            ["malignant", "normal, benign"],
            1,
            (546, 78, 156),
            "750601b1f35ba3300ea97c75c52ff8f6 742edef2a1fd1524b2efff4bd7ba9364 363e4b3f8d712e9b5de15470a2aaadf1 b56378a6eefa9fed602bb16d192d4c8b",
        ),
        _i(
            "bloodmnist",
            MC,
            [
                "basophil",
                "eosinophil",
                "erythroblast",
                "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
                "lymphocyte",
                "monocyte",
                "neutrophil",
                "platelet",
            ],
            3,
            (11959, 1712, 3421),
            "7053d0359d879ad8a5505303e11de1dc 2b94928a2ae4916078ca51e05b6b800b adace1e0ed228fccda1f39692059dd4c b718ff6835fcbdb22ba9eacccd7b2601",
        ),
        _i(
            "tissuemnist",
            MC,
            [
                "Collecting Duct, Connecting Tubule",
                "Distal Convoluted Tubule",
                "Glomerular endothelial cells",
                "Interstitial endothelial cells",
                "Leukocytes",
                "Podocytes",
                "Proximal Tubule Segments",
                "Thick Ascending Limb",
            ],
            1,
            (165466, 23640, 47280),
            "ebe78ee8b05294063de985d821c1c34b 123ece2eba09d0aa5d698fda57103344 61b955355d7425a89687b06cca3ce0c2 b077128c4a949f0a4eb01517f9037b9c",
        ),
        _i(
            "organamnist",
            MC,
            _ORGANS,
            1,
            (34561, 6491, 17778),
            "68e3f8846a6bd62f0c9bf841c0d9eacc 2dcccc29b88e6da5a01161ef20cda288 eeae80d0a227a8d099027e1b3cfd3b60 50747347e05c87dd3aaf92c49f9f3170",
        ),
        _i(
            "organcmnist",
            MC,
            _ORGANS,
            1,
            (12975, 2392, 8216),
            "b9ceb9546e10131b32923c5bbeaea2b1 3ce34a8724ea6f548e6db4744d03b6a9 773c1f009daa3fe5d9a2a201b2a7ed94 050f5e875dc056f6768abf94ec9995d1",
        ),
        _i(
            "organsmnist",
            MC,
            _ORGANS,
            1,
            (13932, 2452, 8827),
            "9ab87b696fb54e2a387ebe992d6ed5f1 53a6d115339d874c25e309a994ff46d3 ded0c5fa01a95dc4978b956f613e9b8e b354719e553fbbb2513d5533f52a4cb1",
        ),
        _i(
            "organmnist3d",
            MC,
            [
                "liver",
                "kidney-right",
                "kidney-left",
                "femur-right",
                "femur-left",
                "bladder",
                "heart",
                "lung-right",
                "lung-left",
                "spleen",
                "pancreas",
            ],
            1,
            (971, 161, 610),
            "a0c5a1ff56af4f155c46d46fbb45a2fe 58a2205adf14a9d0a189cb06dc78bf10",
            3,
        ),
        _i(
            "nodulemnist3d",
            BC,
            ["benign", "malignant"],
            1,
            (1158, 165, 310),
            "8755a7e9e05a4d9ce80a24c3e7a256f3 c47c5b7d457bf6332200d2ea6d64ecd8",
            3,
        ),
        _i(
            "adrenalmnist3d",
            BC,
            ["normal", "hyperplasia"],
            1,
            (1188, 98, 298),
            "bbd3c5a5576322bc4cdfea780653b1ce 17721accfe9fb005146a47d33bc54b2f",
            3,
        ),
        _i(
            "fracturemnist3d",
            MC,
            ["buckle rib fracture", "nondisplaced rib fracture", "displaced rib fracture"],
            1,
            (1027, 103, 240),
            "6aa7b0143a6b42da40027a9dda61302f f01d7e6316aedf4210da0da5b7437b42",
            3,
        ),
        _i(
            "vesselmnist3d",
            BC,
            ["vessel", "aneurysm"],
            1,
            (1335, 191, 382),
            "b41fd4f7e7e2feedddb201585ecafa1b 6bb274a8846e1097066dcd64e2c4520f",
            3,
        ),
        _i(
            "synapsemnist3d",
            BC,
            ["inhibitory synapse", "excitatory synapse"],
            1,
            (1230, 177, 352),
            "1235b78a3cd6280881dd7850a78eadb6 43bd14ebf3af9d3dd072446fedc14d5e",
            3,
        ),
    ]
}


def medmnist_info(flag: str) -> MedMNISTInfo:
    """The catalogue entry of ``flag`` (any case); a :class:`MedvisionError` listing the flags if unknown."""
    info = INFO.get(flag.lower())
    if info is None:
        raise MedvisionError(f"unknown MedMNIST flag {flag!r}", fix=f"use one of: {', '.join(INFO)}")
    return info
