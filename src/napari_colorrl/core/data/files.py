"""Reading images and label files (no Qt, no napari, no torch; writing: ``writing.py``).

Images: TIFF (2D, 3D ZYX, RGB) through tifffile, PNG/JPEG through PIL. Labels: integer instance
ids (0 = background); CVPPP-style palette PNGs are read as palette *indices*. Training folders
pair images and labels by file name stem; ``load_dataset_dir`` reads the ``train/`` and ``val/``
layout of a data-set folder (``images/`` with ``masks/`` or ``labels/`` in each).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")
#: An output named like this is one zarr array (labels written in tiles), not a folder of TIFFs.
ZARR_SUFFIXES = (".zarr",)
#: Output names that are one label file (a TIFF or a zarr array), not a folder.
LABEL_FILE_SUFFIXES = TIFF_SUFFIXES + ZARR_SUFFIXES
#: Endings of a label file's stem that are ignored when pairing it with its image.
LABEL_STEM_SUFFIXES = ("_labels", "_label", "_masks", "_mask")
_MAX_LISTED = 5
#: The TIFF ``Software`` tag of every file ``colorrl predict`` writes: how it knows its own files.
PREDICTION_TAG = "napari-colorrl predict"
#: Extra outputs of ``predict --save-steps``, as endings of the label file's stem.
PREDICTION_EXTRAS = ("_steps", "_colors")
_SUPPORTED = ", ".join(IMAGE_SUFFIXES)


@dataclass
class Sample:
    """One training/validation pair: image (spatial axes, optional channels last) and labels."""

    name: str
    image: np.ndarray
    labels: np.ndarray


# --- single files -------------------------------------------------------------------------------
def is_image_file(path: str | Path) -> bool:
    """True for an existing, non-hidden file with one of ``IMAGE_SUFFIXES``."""
    path = Path(path)
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    )


def list_images(path: str | Path) -> list[Path]:
    """``[path]`` for an image file or a zarr array (a ``.zarr`` folder), or the sorted image
    files of a folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; give an image file or a folder of images.")
    if path.is_dir() and path.suffix.lower() in ZARR_SUFFIXES:
        return [path]
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{path} is not a supported image file ({_SUPPORTED}).")
        return [path]
    images = _images_in(path)
    if not images:
        raise ValueError(f"The folder {path} holds no image files ({_SUPPORTED}).")
    return images


def read_image(path: str | Path) -> np.ndarray:
    """Read a 2D image, an RGB image (H, W, 3) or a 3D TIFF volume (Z, Y, X).

    Singleton axes are dropped (an ImageJ (1, Y, X) TIFF becomes (Y, X)); an alpha channel is
    dropped; palette PNGs are expanded to RGB. A TIFF whose metadata names its axes (ImageJ,
    OME, tifffile) has its channel axis (C or S) moved last: an ImageJ (Z, C, Y, X) hyperstack
    becomes (Z, Y, X, C), so channels are never mistaken for planes or time points.
    """
    path = _existing(path, "Image")
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _read_tiff(path, channels_last=True)[0]
    data, mode = _read_pil(path, as_rgb=True)
    if mode == "1":
        data = data.astype(np.uint8)
    if mode in ("RGBA", "LA", "PA") and data.ndim == 3:
        data = data[..., :-1]
    return _squeeze(data)


def read_labels(path: str | Path) -> np.ndarray:
    """Read a label image of integer instance ids (0 = background, 1..N objects).

    Palette PNGs (mode 'P', as in CVPPP) are read as palette *indices*, not colours. An RGB label
    image whose three channels are equal is read as its gray values; any other RGB(A) label image
    is colour-coded: each distinct colour becomes one id (black = 0, the other colours 1..K in
    sorted colour order) and the alpha channel is ignored. Float labels holding whole numbers are
    cast to integers. Raises ValueError (naming the file) for fractional or negative values.
    """
    path = _existing(path, "Label")
    if path.suffix.lower() in TIFF_SUFFIXES:
        data, rgb = _read_tiff(path)
        if rgb and data.ndim == 3 and data.shape[-1] == 3:
            data = _colours_to_ids(data)
    else:
        data, mode = _read_pil(path, as_rgb=False)  # 'P': the palette indices, not colours
        if mode in ("PA", "LA"):
            data = data[..., 0]
        elif mode in ("RGB", "RGBA"):
            data = _colours_to_ids(data[..., :3])
        elif mode not in ("P", "L", "1", "I", "I;16", "I;16B", "I;16L", "F"):
            raise ValueError(
                f"The label image {path} has PIL mode {mode!r}; save the labels as a "
                f"single-channel integer PNG or TIFF."
            )
        data = _squeeze(data)
    return as_label_array(data, source=str(path))


def as_label_array(data: np.ndarray, source: str = "the labels") -> np.ndarray:
    """Check that ``data`` holds non-negative whole numbers and return an unsigned integer array.

    Unsigned integer arrays are returned unchanged; booleans, signed integers and floats become
    the smallest unsigned type that holds their maximum. Float ids of 2^53 and more (which a cast
    would round or, above 2^64, turn into background) are numbered 1..N by value.
    """
    data = np.asarray(data)
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype.kind == "u":
        return data
    if data.dtype.kind not in "if":
        raise ValueError(
            f"{source} has dtype {data.dtype}; labels must be integer instance ids. Save them as "
            f"an integer image (uint8/uint16/uint32)."
        )
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            raise ValueError(
                f"{source} holds NaN or infinite values; labels must be integer instance ids. "
                f"Replace them (e.g. with 0 for background) and save as an integer image."
            )
        if np.any(data != np.round(data)):
            raise ValueError(
                f"{source} holds fractional values (float dtype {data.dtype}); labels must be "
                f"whole-number instance ids. Was an interpolating resize or a probability map "
                f"saved instead? Save the labels as an integer image (uint16)."
            )
    if data.size and data.min() < 0:
        raise ValueError(
            f"{source} holds negative ids (minimum {data.min()}); labels must be 0 for background "
            f"and 1..N for objects. Relabel it (e.g. skimage.segmentation.relabel_sequential)."
        )
    top = int(data.max()) if data.size else 0
    if data.dtype.kind == "f" and top >= 2**53:
        # Beyond 2^53 a float no longer holds every whole number, and beyond 2^64 a cast to
        # uint64 gives 0 (background): number the distinct values instead, 0 staying 0.
        ids, inverse = np.unique(data, return_inverse=True)
        data = inverse.reshape(data.shape) + int(ids[0] != 0)
        top = int(data.max())
    return data.astype(smallest_uint(top, (np.uint8, np.uint16, np.uint32, np.uint64)))


# --- folders ------------------------------------------------------------------------------------
def list_pairs(
    images_dir: str | Path, labels_dir: str | Path, images: Iterable[Path] | None = None
) -> list[tuple[Path, Path]]:
    """Pair every image of ``images_dir`` with the label file of the same stem in ``labels_dir``.

    images: the files of ``images_dir`` to pair (default: all its image files).

    Suffixes may differ (``a.png`` pairs with ``a.tif``) and a label stem may end in ``_label``,
    ``_labels``, ``_mask`` or ``_masks``. Both folders may be the same folder. Label files
    without an image are ignored. Raises FileNotFoundError for a missing folder and ValueError
    for an empty folder, an image without labels or two candidate label files.
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for folder, what in ((images_dir, "images"), (labels_dir, "labels")):
        if not folder.is_dir():
            raise FileNotFoundError(f"The {what} folder {folder} does not exist (or is no folder).")
    same = images_dir.resolve() == labels_dir.resolve()
    images = [p for p in (_images_in(images_dir) if images is None else images)
              if not (same and _label_stem(p) != p.stem)]
    labels = _images_in(labels_dir)
    if not images:
        raise ValueError(f"The images folder {images_dir} holds no image files ({_SUPPORTED}).")
    if not labels:
        raise ValueError(f"The labels folder {labels_dir} holds no label files ({_SUPPORTED}).")

    exact: dict[str, list[Path]] = {}
    loose: dict[str, list[Path]] = {}
    for label in labels:
        exact.setdefault(label.stem, []).append(label)
        if _label_stem(label) != label.stem:
            loose.setdefault(_label_stem(label), []).append(label)
    pairs: list[tuple[Path, Path]] = []
    missing: list[str] = []
    for image in images:
        found = [p for p in exact.get(image.stem, []) if p != image] or loose.get(image.stem, [])
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise ValueError(
                f"The image {image.name} matches several label files in {labels_dir} ({names}); "
                f"keep only one."
            )
        pairs.extend((image, label) for label in found)
        if not found:
            missing.append(image.name)
    if missing:
        shown = ", ".join(missing[:_MAX_LISTED])
        more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise ValueError(
            f"{len(missing)} image(s) in {images_dir} have no label file in {labels_dir}: "
            f"{shown}{more}. Label files must have the image's name (any of {_SUPPORTED}, "
            f"optionally ending in _label or _mask)."
        )
    return pairs


def prediction_files(folder: str | Path) -> list[Path]:
    """The label files of a predictions folder: its image files without the ``_steps`` and
    ``_colors`` files ``predict --save-steps`` writes next to them. ValueError when two files
    share a stem (``a.tif`` and ``a.png``), naming them: each would be scored as the same image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"The predictions folder {folder} does not exist (or is no folder).")
    files = _images_in(folder)
    stems = {p.stem.casefold() for p in files}
    labels = [p for p in files if not any(
        p.stem.casefold().endswith(end) and p.stem.casefold()[: -len(end)] in stems
        for end in PREDICTION_EXTRAS)]
    by_stem: dict[str, list[Path]] = {}
    for p in labels:
        by_stem.setdefault(p.stem.casefold(), []).append(p)
    twins = [" and ".join(p.name for p in group) for group in by_stem.values() if len(group) > 1]
    if twins:
        raise ValueError(
            f"The predictions folder {folder} holds several files per image: {'; '.join(twins)}; "
            f"keep one prediction per image (or predict into separate folders)."
        )
    return labels


def load_pairs(pairs: Iterable[tuple[Path, Path]], ndim: int | None = None) -> list[Sample]:
    """Read image/label pairs into ``Sample``s, checking that their spatial shapes agree.

    An image may carry a channel axis (H, W, C) or (C, H, W) with C <= 4 next to (H, W) labels.
    ndim: when given, the labels must have this many axes (2 or 3).
    """
    samples: list[Sample] = []
    for image_path, label_path in pairs:
        image, labels = read_image(image_path), read_labels(label_path)
        if ndim is not None and labels.ndim != ndim:
            raise ValueError(
                f"{label_path} has {labels.ndim} axes {labels.shape} but {ndim}D data was asked "
                f"for; train 2D images and 3D volumes separately."
            )
        if not shapes_match(image.shape, labels.shape):
            raise ValueError(
                f"The image {image_path} has shape {image.shape} but its labels {label_path} have "
                f"shape {labels.shape}; an image and its labels must have the same size."
            )
        samples.append(Sample(name=Path(image_path).stem, image=image, labels=labels))
    return samples


def find_split(root: str | Path, split: str) -> tuple[Path, Path]:
    """``(images_dir, labels_dir)``: ``root/split/images`` and ``masks/`` (or ``labels/``)."""
    folder = Path(root) / split
    images = folder / "images"
    labels = next((folder / n for n in ("masks", "labels") if (folder / n).is_dir()), None)
    if not images.is_dir() or labels is None:
        raise FileNotFoundError(
            f"Expected the folders {images} and {folder / 'masks'} (or {folder / 'labels'}); "
            f"a data folder holds train/images and train/masks, and optionally val/images and "
            f"val/masks, with label files named like their images."
        )
    return images, labels


def load_dataset_dir(root: str | Path) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples of ``root/train`` and ``root/val`` (val may be absent)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"The data folder {root} does not exist.")
    train = load_pairs(list_pairs(*find_split(root, "train")))
    val: list[Sample] = []
    if (root / "val").is_dir():
        val = load_pairs(list_pairs(*find_split(root, "val")))
    return train, val


# --- helpers ------------------------------------------------------------------------------------
def _read_pil(path: Path, as_rgb: bool) -> tuple[np.ndarray, str]:
    """Array and PIL mode of a PNG/JPEG; as_rgb: palette and other colour modes become RGB(A)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            mode = img.mode
            if as_rgb and mode in ("P", "PA"):
                img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
            elif as_rgb and mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGB")
            return np.asarray(img), img.mode
    except OSError as err:
        raise ValueError(f"Could not read the image file {path}: {err}.") from None


def _read_tiff(path: Path, channels_last: bool = False) -> tuple[np.ndarray, bool]:
    """Array (singleton axes and alpha dropped) and whether the TIFF is stored as RGB.

    channels_last: move a channel axis named in the metadata (C, or S for samples) last."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            axes = tif.series[0].axes if tif.series else ""
            photometric = tif.pages[0].photometric if len(tif.pages) else None
    except (tifffile.TiffFileError, OSError, ValueError) as err:
        raise ValueError(f"Could not read the TIFF file {path}: {err}.") from None
    if channels_last:
        data = channels_to_last(data, axes)
    rgb = photometric == tifffile.PHOTOMETRIC.RGB
    if rgb and data.ndim >= 3 and data.shape[-1] == 4:
        data = data[..., :3]
    return _squeeze(data), rgb


def channels_to_last(data: np.ndarray, axes: str) -> np.ndarray:
    """``data`` with its one channel axis ("C" or "S" in ``axes``, one letter per axis, as
    tifffile and OME name them) moved last; unchanged when the axes are unknown or hold none."""
    axes = axes.upper()
    if len(axes) != data.ndim:
        return data
    found = [i for i, letter in enumerate(axes) if letter in "CS" and data.shape[i] > 1]
    if len(found) != 1:
        return data
    return np.moveaxis(data, found[0], -1)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p))


def _colours_to_ids(rgb: np.ndarray) -> np.ndarray:
    """Map each distinct colour of an (..., 3) array to an id; black is 0, equal channels: gray."""
    rgb = np.asarray(rgb)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0]
    flat = rgb.reshape(-1, 3).astype(np.uint64)
    packed = (flat[:, 0] << np.uint64(32)) | (flat[:, 1] << np.uint64(16)) | flat[:, 2]
    colours, inverse = np.unique(packed, return_inverse=True)
    offset = 0 if colours[0] == 0 else 1  # black is background (id 0); other colours 1..K
    ids = np.arange(offset, len(colours) + offset, dtype=np.int64)
    return ids[inverse.reshape(-1)].reshape(rgb.shape[:-1])


def smallest_uint(top: int, dtypes: tuple[type, ...]) -> type:
    """The first of ``dtypes`` that holds ``top`` (else the last)."""
    return next((dtype for dtype in dtypes if top <= np.iinfo(dtype).max), dtypes[-1])


def shapes_match(image_shape: tuple[int, ...], label_shape: tuple[int, ...]) -> bool:
    """Equal shapes, or the image has one more axis of at most 4 channels (first or last)."""
    return (
        image_shape == label_shape
        or len(image_shape) == len(label_shape) + 1
        and (
            (image_shape[:-1] == label_shape and image_shape[-1] <= 4)
            or (image_shape[1:] == label_shape and image_shape[0] <= 4)
        )
    )


def _squeeze(data: np.ndarray) -> np.ndarray:
    while data.ndim > 2 and 1 in data.shape:
        data = np.squeeze(data, axis=data.shape.index(1))
    return data


def _label_stem(path: Path) -> str:
    stem = path.stem
    for suffix in LABEL_STEM_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _existing(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file {path} does not exist.")
    if not path.is_file():
        raise ValueError(f"{what} file {path} is a folder, not a file.")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"{what} file {path} has an unsupported type; use {_SUPPORTED}.")
    return path
