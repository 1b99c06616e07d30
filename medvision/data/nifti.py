"""``NiftiReader``: MONAI's NIfTI reader without its two slow steps at real sizes.

Reading a 512 x 512 x 300 CT (``.nii.gz``) with MONAI's ``LoadImage`` took 3.3 s for the image
and 2.0 s for its uint8 label map on the benchmark machine, nnU-Net's whole preprocessing of
both 3.9 s (`make bench`, row 10). Two steps made most of it:

- the memory order: NIfTI stores voxels with the first axis fastest (Fortran order); nibabel
  hands them over that way, and ``LoadImage`` turns them into a C-ordered ``float32`` array with
  one ``np.ascontiguousarray`` call, a transposing copy with a stride of 512 x 512 elements
  (2.2 s for the image, 1.7 s for the label). This reader copies tiles that fit the CPU cache
  instead (about 0.8 s each);
- decompression: Python's ``gzip`` (zlib) inflates about 150 MB/s; ISA-L (the ``isal``
  package) twice that. A ``.nii.gz`` is inflated in memory with it, then parsed by nibabel.

The arrays are the same (values, dtype, order, metadata) as MONAI's
:class:`~monai.data.NibabelReader`, which does everything else.

It is the reader of the ``load_image`` step of the volume transforms
(``conf/data/transforms/seg3d.yaml``: ``reader: medvision.data.nifti.NiftiReader``). A file that is
not NIfTI is refused at once, and ``LoadImage`` then reads it with MONAI's other readers as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import NibabelReader
from monai.data.utils import correct_nifti_header_if_necessary
from monai.utils import ensure_tuple

#: what this reader reads (anything else goes to MONAI's other readers)
SUFFIXES = (".nii", ".nii.gz")
#: tile edge (voxels) of the first two axes in the order conversion: 64 x 64 x depth tiles of a
#: 512 x 512 x 300 volume were the fastest of 8 ... 128 on the 2-core benchmark machine
TILE = 64


def c_order(array: np.ndarray, dtype: Any = None) -> np.ndarray:
    """``np.ascontiguousarray(array, dtype)``, tile by tile when ``array`` is a Fortran-ordered volume.

    Args:
        array: any array; a Fortran-ordered one of 3 or more dimensions is converted in tiles.
        dtype: the dtype of the result (``None``: the array's).

    Returns:
        A C-contiguous array equal to ``array`` (``array`` itself when it already is one of ``dtype``).
    """
    dtype = np.dtype(dtype or array.dtype)
    if array.ndim < 3 or array.flags.c_contiguous or not array.flags.f_contiguous:
        return np.ascontiguousarray(array, dtype=dtype)
    out = np.empty(array.shape, dtype)
    for i in range(0, array.shape[0], TILE):
        for j in range(0, array.shape[1], TILE):
            out[i : i + TILE, j : j + TILE] = array[i : i + TILE, j : j + TILE]
    return out


def inflate(data: bytes) -> bytes:
    """The content of gzip ``data`` (every member), by ISA-L where installed, else by zlib."""
    try:
        from isal import igzip
    except ImportError:  # pragma: no cover - isal is a dependency; a build without its wheel still reads
        import gzip as igzip
    return igzip.decompress(data)


def read_gzipped(path: Any) -> Any:
    """The nibabel image (NIfTI-1 or NIfTI-2) of the ``.nii.gz`` file ``path``, inflated in memory."""
    import nibabel as nib

    raw = inflate(Path(path).read_bytes())
    size = int.from_bytes(raw[:4], "little")
    klass = nib.Nifti2Image if 540 in (size, int.from_bytes(raw[:4], "big")) else nib.Nifti1Image
    try:
        return klass.from_bytes(raw)
    except Exception as err:
        raise ValueError(f"{path} is not a readable NIfTI file ({err})") from err


class NiftiReader(NibabelReader):
    """MONAI's ``NibabelReader`` returning C-ordered arrays of ``dtype`` made tile by tile.

    Args:
        dtype: the dtype of the returned arrays (``LoadImage``'s default, ``float32``; ``None``:
            the file's). ``LoadImage`` converts to its own ``dtype`` afterwards, which is then free.
        kwargs: the rest of :class:`monai.data.NibabelReader`'s arguments.
    """

    def __init__(self, dtype: Any = np.float32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dtype = dtype

    def verify_suffix(self, filename: Sequence[Any] | Any) -> bool:
        """Whether every file of ``filename`` is NIfTI (``.nii`` or ``.nii.gz``)."""
        return all(str(f).lower().endswith(SUFFIXES) for f in ensure_tuple(filename))

    def read(self, data: Sequence[Any] | Any, **kwargs: Any) -> Any:
        """nibabel images of ``data``; a file that is not NIfTI raises at once (``LoadImage`` then
        tries its other readers)."""
        if not self.verify_suffix(data):
            raise ValueError(f"NiftiReader reads {' and '.join(SUFFIXES)} files only, not {data}")
        names = ensure_tuple(data)
        if not all(str(f).lower().endswith(".gz") for f in names):
            return super().read(data, **kwargs)
        self.filenames = names
        images = [correct_nifti_header_if_necessary(read_gzipped(f)) for f in names]
        return images if len(names) > 1 else images[0]

    def _get_array_data(self, img: Any, filename: Any) -> np.ndarray:
        return c_order(super()._get_array_data(img, filename), self.dtype)
