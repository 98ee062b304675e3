"""Tests of core.io: reading/writing images and labels, pairing folders, the train/val layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import shared_dataset
from napari_colorrl.core.data.files import (
    IMAGE_SUFFIXES,
    Sample,
    find_split,
    is_image_file,
    list_images,
    list_pairs,
    load_dataset_dir,
    load_pairs,
    read_image,
    read_labels,
)
from napari_colorrl.core.data.writing import write_labels, write_tiff


def _labels2d() -> np.ndarray:
    labels = np.zeros((12, 16), dtype=np.uint16)
    labels[2:6, 3:9] = 1
    labels[7:11, 1:5] = 7
    return labels


def _tmp_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_tiff_round_trip_2d_and_3d(tmp_path, rng):
    image2d = rng.integers(0, 255, (12, 16), dtype=np.uint8)
    volume = rng.integers(0, 4000, (5, 6, 7), dtype=np.uint16)
    write_tiff(tmp_path / "a.tif", image2d)
    write_tiff(tmp_path / "sub" / "v.tiff", volume)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), image2d)
    out = read_image(tmp_path / "sub" / "v.tiff")
    assert out.shape == (5, 6, 7) and out.dtype == np.uint16
    np.testing.assert_array_equal(out, volume)

    labels3d = np.zeros((5, 6, 7), dtype=np.int32)
    labels3d[1:3, 2:4, 2:5] = 3
    write_labels(tmp_path / "l3.tif", labels3d)
    back = read_labels(tmp_path / "l3.tif")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, labels3d)
    write_labels(tmp_path / "l2.tif", _labels2d())
    np.testing.assert_array_equal(read_labels(tmp_path / "l2.tif"), _labels2d())
    assert _tmp_leftovers(tmp_path) == []


def test_write_labels_dtype_choice_and_compression(tmp_path):
    small = _labels2d().astype(np.int64)
    write_labels(tmp_path / "s.tif", small)
    big = _labels2d().astype(np.uint32)
    big[big == 7] = 70000
    write_labels(tmp_path / "b.tif", big)
    assert tifffile.imread(tmp_path / "s.tif").dtype == np.uint16
    assert tifffile.imread(tmp_path / "b.tif").dtype == np.uint32
    assert read_labels(tmp_path / "b.tif").max() == 70000
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    with pytest.raises(ValueError, match="TIFF"):
        write_labels(tmp_path / "x.png", small)


def test_write_replaces_existing_file(tmp_path):
    path = tmp_path / "l.tif"
    write_labels(path, np.ones((4, 4), dtype=np.uint8))
    write_labels(path, np.full((4, 4), 2, dtype=np.uint8))
    assert read_labels(path).max() == 2
    assert _tmp_leftovers(tmp_path) == []


def test_rgb_and_rgba_png_image(tmp_path, rng):
    rgb = rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)
    rgba = np.concatenate([rgb, np.full((10, 12, 1), 255, np.uint8)], axis=-1)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png")
    assert out.shape == (10, 12, 3)
    np.testing.assert_array_equal(out, rgb)


def test_palette_png_labels_read_as_indices(tmp_path):
    labels = _labels2d().astype(np.uint8)
    img = Image.fromarray(labels, mode="P")
    palette = [0, 0, 0] + [(37 * i) % 256 for i in range(3, 768)]  # colours are not the indices
    img.putpalette(palette)
    img.save(tmp_path / "pal.png")
    with Image.open(tmp_path / "pal.png") as check:
        assert check.mode == "P"
        assert np.asarray(check.convert("RGB"))[3, 4, 0] != 1
    out = read_labels(tmp_path / "pal.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels)


def test_rgb_colour_coded_labels(tmp_path):
    rgb = np.zeros((6, 6, 3), dtype=np.uint8)
    rgb[0:2, 0:2] = (255, 0, 0)
    rgb[3:5, 3:5] = (0, 128, 255)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    out = read_labels(tmp_path / "c.png")
    assert out[5, 0] == 0 and set(np.unique(out)) == {0, 1, 2}
    assert out[0, 0] != out[3, 3]
    gray = np.repeat(_labels2d().astype(np.uint8)[..., None], 3, axis=-1)
    Image.fromarray(gray).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_labels(tmp_path / "g.png"), _labels2d())


def test_float_labels(tmp_path):
    whole = _labels2d().astype(np.float32)
    tifffile.imwrite(tmp_path / "whole.tif", whole)
    out = read_labels(tmp_path / "whole.tif")
    assert out.dtype.kind == "u"
    np.testing.assert_array_equal(out, _labels2d())
    frac = whole.copy()
    frac[0, 0] = 0.5
    tifffile.imwrite(tmp_path / "frac.tif", frac)
    with pytest.raises(ValueError, match=r"frac\.tif.*fractional"):
        read_labels(tmp_path / "frac.tif")


def test_negative_labels(tmp_path):
    labels = _labels2d().astype(np.int16)
    labels[0, 0] = -1
    tifffile.imwrite(tmp_path / "neg.tif", labels)
    with pytest.raises(ValueError, match=r"neg\.tif.*negative"):
        read_labels(tmp_path / "neg.tif")


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.tif"):
        read_image(tmp_path / "nothere.tif")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="notes.txt"):
        read_image(tmp_path / "notes.txt")
    (tmp_path / "broken.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(ValueError, match="broken.tif"):
        read_labels(tmp_path / "broken.tif")


def _write_pair(images: Path, masks: Path, name: str, shape=(12, 16), label_name=None) -> None:
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(shape, np.uint8)).save(images / f"{name}.png")
    labels = np.zeros(shape[:2], np.uint16)
    labels[1:3, 1:3] = 1
    tifffile.imwrite(masks / (label_name or f"{name}.tif"), labels)


def test_list_pairs_by_stem_and_label_suffix(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    _write_pair(images, masks, "b")
    _write_pair(images, masks, "a", label_name="a_mask.tif")
    _write_pair(images, masks, "c", label_name="c_masks.png")
    pairs = list_pairs(images, masks)
    assert [(i.name, lab.name) for i, lab in pairs] == [
        ("a.png", "a_mask.tif"),
        ("b.png", "b.tif"),
        ("c.png", "c_masks.png"),
    ]
    samples = load_pairs(pairs)
    assert isinstance(samples[0], Sample) and samples[0].name == "a"
    assert samples[0].labels.shape == samples[0].image.shape


def test_list_pairs_missing_partner(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    _write_pair(images, masks, "a")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(images / "lonely.png")
    with pytest.raises(ValueError, match="lonely.png"):
        list_pairs(images, masks)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_pairs(tmp_path / "nowhere", masks)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        list_pairs(tmp_path / "empty", masks)


def test_shape_mismatch(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    _write_pair(images, masks, "a")
    tifffile.imwrite(masks / "a.tif", np.zeros((10, 10), np.uint16))
    with pytest.raises(ValueError, match=r"a\.png.*\(12, 16\).*a\.tif.*\(10, 10\)"):
        load_pairs(list_pairs(images, masks))


def test_rgb_image_pairs_with_2d_labels(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    _write_pair(images, masks, "rgb", shape=(12, 16, 3))
    (sample,) = load_pairs(list_pairs(images, masks), ndim=2)
    assert sample.image.shape == (12, 16, 3) and sample.labels.shape == (12, 16)
    with pytest.raises(ValueError, match="3D"):
        load_pairs(list_pairs(images, masks), ndim=3)


def test_train_val_layout(tmp_path):
    root = tmp_path / "data"
    _write_pair(root / "train" / "images", root / "train" / "masks", "t1")
    _write_pair(root / "train" / "images", root / "train" / "masks", "t2")
    train, val = load_dataset_dir(root)
    assert [s.name for s in train] == ["t1", "t2"] and val == []
    _write_pair(root / "val" / "images", root / "val" / "labels", "v1")
    assert find_split(root, "val")[1].name == "labels"
    train, val = load_dataset_dir(root)
    assert len(train) == 2 and [s.name for s in val] == ["v1"]
    with pytest.raises(FileNotFoundError, match="train"):
        load_dataset_dir(tmp_path / "data" / "train")


def test_list_images_and_is_image_file(tmp_path):
    for name in ("b.tif", "a.png", ".hidden.png", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.tif"]
    assert list_images(tmp_path / "a.png") == [tmp_path / "a.png"]
    assert is_image_file(tmp_path / "b.tif") and not is_image_file(tmp_path / "c.txt")
    assert ".jpeg" in IMAGE_SUFFIXES


def test_real_data_pairs():
    cvppp = shared_dataset("cvppp_a1")
    image_path = sorted((cvppp / "train" / "images").iterdir())[0]
    (sample,) = load_pairs(list_pairs(*find_split(cvppp, "train"))[:1])
    assert sample.name == image_path.stem
    assert sample.image.ndim == 3 and sample.image.shape[-1] == 3
    assert sample.labels.shape == sample.image.shape[:2] and sample.labels.dtype.kind == "u"
    assert 10 <= len(np.unique(sample.labels)) - 1 <= 60

    nuclei = shared_dataset("gonuclear3d")
    (volume,) = load_pairs(list_pairs(*find_split(nuclei, "val"))[:1], ndim=3)
    assert volume.image.ndim == 3 and volume.image.shape == volume.labels.shape
    assert volume.labels.dtype == np.uint16 and volume.labels.max() >= 10
