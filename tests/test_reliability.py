"""Bad inputs in the core and the CLI: each gets a clear message naming the problem and the fix.

The table in docs/reliability.md points at these tests. Everything is tiny (networks of widths
4 and 8, images of a few dozen pixels) so the whole file runs in well under a minute.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings

import numpy as np
import pytest
import tifffile
import torch

from conftest import tiny_config as shared_tiny_config
from napari_colorrl.cli.main import main
from napari_colorrl.core import runtime
from napari_colorrl.core.config import ColorRLConfig
from napari_colorrl.core.config_files import deep_update
from napari_colorrl.core.data.checks import ColorRLWarning, check_training_samples, ensure_writable
from napari_colorrl.core.data.files import Sample
from napari_colorrl.core.data.synthetic import make_cells_2d
from napari_colorrl.core.inference import Segmenter
from napari_colorrl.core.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from napari_colorrl.core.model.networks import build_network
from napari_colorrl.core.training.setup import TrainingRequest, prepare_training
from napari_colorrl.core.training.trainer import train

NETWORK = {"features": [4, 8], "attention": True, "input_features": 4}
NETWORK_SETTINGS = {f"network.{key}": value for key, value in NETWORK.items()}


def tiny_config(ndim: int = 2, **changes) -> ColorRLConfig:
    return shared_tiny_config(ndim, **deep_update(
        {"train": {"batch_size": 1, "episodes": 2, "val_every": 100}}, changes))


def segmenter(ndim: int = 2, **changes) -> Segmenter:
    config = tiny_config(ndim, **changes)
    torch.manual_seed(0)
    return Segmenter(build_network(config), config, device="cpu")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    config = tiny_config()
    torch.manual_seed(0)
    save_checkpoint(path, config=config, model_state=build_network(config).state_dict())
    return path


@pytest.fixture(scope="module")
def cells():
    return make_cells_2d(shape=(40, 40), n_objects=5, seed=0)


def cli_error(capsys, argv: list[str]) -> str:
    """Run the CLI, expect a non-zero exit and one error line; return that line."""
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("colorrl: error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def write_folder(root, pairs) -> tuple:
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for i, (image, label) in enumerate(pairs):
        tifffile.imwrite(images / f"s{i}.tif", image)
        tifffile.imwrite(labels / f"s{i}.tif", label)
    return images, labels


# --- shapes, channels, dimensions --------------------------------------------------------------
def test_image_and_labels_of_different_shapes(tmp_path, capsys, cells):
    image, labels = cells
    with pytest.raises(ValueError, match=r"same size"):
        check_training_samples([Sample("a", image, labels[:30])], ndim=2)
    images, labels_dir = write_folder(tmp_path, [(image, labels[:30])])
    line = cli_error(capsys, ["train", "--images", str(images), "--labels", str(labels_dir),
                              "--out", str(tmp_path / "m.pt")])
    assert "shape (40, 40)" in line and "(30, 40)" in line and "same size" in line


@pytest.mark.parametrize("layout", ["last", "first"])
def test_rgb_and_multichannel_images(layout, cells):
    image, labels = cells
    rgb = np.stack([image, image * 0.5, image * 0.2], axis=-1 if layout == "last" else 0)
    result = segmenter().segment(rgb)
    assert result.instances.shape == (40, 40)
    two = np.stack([image, image], axis=-1 if layout == "last" else 0)
    assert segmenter().segment(two).instances.shape == (40, 40)
    setup = prepare_training(TrainingRequest(samples=[Sample("rgb", rgb, labels)], ndim=2,
                                             settings={"steps": 3, **NETWORK_SETTINGS}))
    assert setup.config.normalization.channels == 3
    with pytest.raises(ValueError, match="up to 4 colour channels"):
        segmenter().segment(np.stack([image] * 6, axis=-1))


def test_2d_model_on_3d_data_and_reverse(tmp_path, capsys, model_file):
    volume = np.random.default_rng(0).random((10, 24, 24)).astype(np.float32)
    with pytest.raises(ValueError, match="use a 3D model for 3D data"):
        segmenter(2).segment(volume)
    with pytest.raises(ValueError, match="use a 2D model for 2D data"):
        segmenter(3).segment(volume[0])
    tifffile.imwrite(tmp_path / "vol.tif", volume)
    line = cli_error(capsys, ["predict", "--model", str(model_file), "--input",
                              str(tmp_path / "vol.tif"), "--output", str(tmp_path / "o")])
    assert "2D model" in line and "use a 3D model" in line
    with pytest.raises(ValueError, match="use a 3D model"):
        check_training_samples([Sample("v", volume, (volume > 0.5).astype(np.uint8))], ndim=2)


# --- labels ------------------------------------------------------------------------------------
def test_empty_labels(tmp_path, capsys, cells):
    image, labels = cells
    with pytest.raises(ValueError, match="training labels are empty"):
        list(train(tiny_config(), [Sample("a", image, np.zeros_like(labels))],
                   out=tmp_path / "m.pt"))
    assert not (tmp_path / "m.pt").exists()
    images, labels_dir = write_folder(tmp_path / "data", [(image, np.zeros_like(labels))])
    line = cli_error(capsys, ["train", "--images", str(images), "--labels", str(labels_dir),
                              "--out", str(tmp_path / "m.pt")])
    assert "empty" in line and "Label at least one object" in line


def test_labels_with_one_object(tmp_path, cells):
    image, labels = cells
    one = (labels == 1).astype(np.uint8)
    setup = prepare_training(TrainingRequest(
        samples=[Sample("one", image, one)], ndim=2, settings={
            "input_size": 32, "reward.radii": [2, 4], "train.episodes": 1, "train.device": "cpu",
            **NETWORK_SETTINGS}))
    assert setup.config.steps == 1  # nothing to tell apart: only foreground and background
    reports = list(train(setup.config, setup.train, out=tmp_path / "one.pt"))
    assert len(reports) == 1 and np.isfinite(reports[0].loss)


@pytest.mark.parametrize("kind", ["fractional", "negative", "nan"])
def test_float_or_negative_label_ids_are_refused(kind, cells):
    image, labels = cells
    bad = {"fractional": labels + 0.5, "negative": labels.astype(np.int32) - 1,
           "nan": np.where(labels > 0, np.nan, 0.0)}[kind]
    with pytest.raises(ValueError, match=r"sample 'a'.*(fractional|negative|NaN)") as info:
        check_training_samples([Sample("a", image, bad)], ndim=2)
    assert "labels must" in str(info.value)
    whole = check_training_samples([Sample("a", image, labels.astype(np.float64))], ndim=2)
    np.testing.assert_array_equal(whole[0].labels, labels)  # floats of whole numbers are fine


def test_huge_label_ids_are_relabelled_not_wrapped(cells):
    image, labels = cells
    huge = labels.astype(np.uint64)
    huge[labels == 2] = 2**32 + 1  # would wrap onto id 1 in int32
    huge[labels == 3] = 2**63
    (checked,) = check_training_samples([Sample("a", image, huge)], ndim=2)
    assert checked.labels.max() <= np.iinfo(np.int32).max
    assert len(np.unique(checked.labels)) == len(np.unique(labels))
    config = tiny_config(input_mode="crop", input_size=[40, 40])
    from napari_colorrl.core.training.environment import Environment

    env = Environment([checked], config, torch.device("cpu"), np.random.default_rng(0))
    assert len(np.unique(env.samples[0].labels)) == len(np.unique(labels))


def test_float_label_ids_beyond_2_64_stay_objects(cells):
    """Float ids above 2^64 used to become 0 (background) in the cast to uint64."""
    from napari_colorrl.core.data.files import as_label_array

    _, labels = cells
    floats = labels.astype(np.float64)
    floats[labels == 2] = 1e20
    floats[labels == 3] = 3e30
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in cast" is gone
        ids = as_label_array(floats)
    assert len(np.unique(ids)) == len(np.unique(labels))
    assert ((ids == 0) == (labels == 0)).all()  # background stays background, nothing joins it


# --- image values and sizes --------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["constant", "nan", "inf", "all-nan"])
def test_constant_nan_inf_images_warn_and_work(kind, cells, tmp_path, capsys, model_file):
    image = cells[0].copy()
    if kind == "constant":
        image[:] = 7.0
    elif kind == "all-nan":
        image[:] = np.nan
    else:
        image[::3, ::3] = np.nan if kind == "nan" else np.inf
    with pytest.warns(ColorRLWarning, match="constant|NaN or infinite"):
        result = segmenter().segment(image)
    assert result.instances.shape == image.shape
    tifffile.imwrite(tmp_path / "x.tif", image)
    assert main(["predict", "--model", str(model_file), "--input", str(tmp_path / "x.tif"),
                 "--output", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "colorrl: warning:" in err and "Traceback" not in err


@pytest.mark.parametrize("mode", ["resize", "crop"])
def test_image_smaller_than_network_input(mode, tmp_path):
    for shape in [(5, 7), (1, 1), (3, 40)]:
        image = np.random.default_rng(1).random(shape).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ColorRLWarning)  # a 1x1 image is constant
            assert segmenter(input_mode=mode).segment(image).instances.shape == shape
    with pytest.raises(ValueError, match="empty"):
        segmenter().segment(np.zeros((0, 5), np.float32))
    labels = np.zeros((6, 9), np.uint8)
    labels[1:4, 2:6] = 1
    image = labels.astype(np.float32) + 0.1
    reports = list(train(tiny_config(input_mode=mode), [Sample("small", image, labels)],
                         out=tmp_path / "small.pt"))
    assert np.isfinite(reports[-1].loss)


def test_huge_image_is_refused_before_allocation(tmp_path, capsys, model_file):
    huge = np.broadcast_to(np.float32(0.5), (200_000, 200_000))  # 160 GB as float32, no memory
    for mode in ("resize", "crop"):
        with pytest.raises(runtime.MemoryCheckError, match=r"200000 x 200000.*tiles"):
            segmenter(input_mode=mode).segment(huge)
    with pytest.raises(runtime.MemoryCheckError, match="Lower the batch size"):
        big = tiny_config(input_size=[4096, 4096], network={"features": [64, 128, 256]},
                          train={"batch_size": 64})
        next(train(big, [Sample("a", *make_cells_2d((32, 32), 3))], out=tmp_path / "m.pt"))
    tifffile.imwrite(tmp_path / "i.tif", np.zeros((64, 64), np.uint8))
    monkey = pytest.MonkeyPatch()
    monkey.setattr(runtime, "available_bytes", lambda device="cpu": 1000)
    try:
        line = cli_error(capsys, ["predict", "--model", str(model_file), "--input",
                                  str(tmp_path / "i.tif"), "--output", str(tmp_path / "o")])
    finally:
        monkey.undo()
    assert "needs about" in line and "is free" in line and "tiles" in line


def test_more_neighbours_than_colors_warns_with_t_needed(tmp_path, capsys):
    labels = np.zeros((30, 30), np.uint16)
    for i in range(3):
        for j in range(3):
            labels[i * 10:(i + 1) * 10, j * 10:(j + 1) * 10] = 1 + i * 3 + j
    image = labels.astype(np.float32)
    request = TrainingRequest(samples=[Sample("grid", image, labels)], ndim=2, settings={
        "steps": 2, "input_size": 30, "reward.radii": [2], **NETWORK_SETTINGS})
    with pytest.warns(ColorRLWarning, match=r"T = 2 .* 8 neighbours.*Use T = 4"):
        prepare_training(request)
    images, labels_dir = write_folder(tmp_path, [(image, labels)])
    (tmp_path / "c.json").write_text(json.dumps({"network": NETWORK, "reward": {"radii": [2]}}))
    monkey = pytest.MonkeyPatch()
    monkey.setattr("napari_colorrl.core.training.trainer.train", lambda *a, **k: iter(()))
    try:
        main(["train", "--images", str(images), "--labels", str(labels_dir), "--steps", "2",
              "--size", "30", "--config", str(tmp_path / "c.json"), "--out",
              str(tmp_path / "m.pt")])
    finally:
        monkey.undo()
    assert "colorrl: warning: T = 2 coloring steps" in capsys.readouterr().err


def test_trainer_flags_override_the_config_file(tmp_path):
    """--precision and --batch-size reach the trained model's config, over --config."""
    image, labels = make_cells_2d(shape=(32, 32), n_objects=3, seed=0)
    images, labels_dir = write_folder(tmp_path, [(image, labels)])
    settings = {"network": NETWORK, "reward": {"radii": [2]}, "min_size": 0,
                "train": {"batch_size": 2, "precision": "float32", "val_every": 100}}
    (tmp_path / "c.json").write_text(json.dumps(settings))
    out = tmp_path / "m.pt"
    assert main(["train", "--images", str(images), "--labels", str(labels_dir), "--steps", "2",
                 "--size", "32", "--device", "cpu", "--threads", "1", "--episodes", "1",
                 "--config", str(tmp_path / "c.json"), "--precision", "bfloat16",
                 "--batch-size", "1", "--out", str(out)]) == 0
    trained = load_checkpoint(out).config.train
    assert (trained.precision, trained.batch_size) == ("bfloat16", 1)


def test_precision_flag_rejects_unknown_values(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--images", str(tmp_path), "--labels", str(tmp_path), "--precision",
              "float16"])
    assert "invalid choice: 'float16'" in capsys.readouterr().err


# --- checkpoints -------------------------------------------------------------------------------
class _Evil:
    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["missing", "truncated", "corrupted", "foreign", "edited",
                                  "malicious"])
def test_bad_checkpoints_in_the_cli(kind, tmp_path, capsys, model_file, monkeypatch):
    path = tmp_path / f"{kind}.pt"
    marker = tmp_path / "code-ran"
    if kind == "truncated":
        data = model_file.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "corrupted":
        data = bytearray(model_file.read_bytes())
        data[100:400] = os.urandom(300)
        path.write_bytes(bytes(data))
    elif kind == "foreign":
        torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    elif kind == "edited":
        data = torch.load(model_file, weights_only=True)
        data["config"] = tiny_config(network={"features": [4, 8, 16]}).to_json()
        torch.save(data, path)
    elif kind == "malicious":
        monkeypatch.setattr(_Evil, "marker", str(marker))
        with open(path, "wb") as fh:
            pickle.dump({"format": "napari-colorrl", "model_state": _Evil()}, fh)
    tifffile.imwrite(tmp_path / "i.tif", np.zeros((16, 16), np.uint8))
    line = cli_error(capsys, ["predict", "--model", str(path), "--input",
                              str(tmp_path / "i.tif"), "--output", str(tmp_path / "o")])
    assert str(path.name) in line
    expected = {"missing": "not found", "truncated": "corrupt", "corrupted": "corrupt",
                "foreign": "state_dict", "edited": "do not fit", "malicious": "refused"}
    assert expected[kind] in line
    if kind != "missing":
        with pytest.raises((CheckpointError, FileNotFoundError)):
            Segmenter.load(path)
    assert not marker.exists()


def test_malicious_checkpoint_does_not_run_when_resuming(tmp_path, capsys, monkeypatch, cells):
    marker = tmp_path / "code-ran"
    monkeypatch.setattr(_Evil, "marker", str(marker))
    evil = tmp_path / "evil.pt"
    torch.save({"format": "napari-colorrl", "format_version": 1, "config": _Evil()}, evil)
    images, labels_dir = write_folder(tmp_path / "data", [cells])
    line = cli_error(capsys, ["train", "--images", str(images), "--labels", str(labels_dir),
                              "--resume", str(evil), "--out", str(tmp_path / "m.pt")])
    assert "refused" in line and not marker.exists()
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    assert not marker.exists()


# --- devices and outputs -----------------------------------------------------------------------
@pytest.mark.parametrize("device", ["cuda:99", "tpu", "mps:3"])
def test_device_that_is_not_there(device, tmp_path, capsys, model_file):
    tifffile.imwrite(tmp_path / "i.tif", np.zeros((16, 16), np.uint8))
    line = cli_error(capsys, ["predict", "--model", str(model_file), "--input",
                              str(tmp_path / "i.tif"), "--output", str(tmp_path / "o"),
                              "--device", device])
    assert repr(device) in line and ("auto" in line or "choose one of" in line)


def test_non_writable_output(tmp_path, capsys, model_file, monkeypatch, cells):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    tifffile.imwrite(tmp_path / "i.tif", np.zeros((16, 16), np.uint8))
    line = cli_error(capsys, ["predict", "--model", str(model_file), "--input",
                              str(tmp_path / "i.tif"), "--output", str(blocker / "out")])
    assert "Cannot write the label files" in line and "Choose an output location" in line
    images, labels_dir = write_folder(tmp_path / "data", [cells])
    line = cli_error(capsys, ["train", "--images", str(images), "--labels", str(labels_dir),
                              "--out", str(blocker / "m.pt")])
    assert "Cannot write the checkpoint" in line
    with pytest.raises(PermissionError, match="Cannot write the checkpoint"):
        next(train(tiny_config(), [Sample("a", *cells)], out=blocker / "m.pt"))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", refuse)  # root may write anywhere: simulate a read-only dir
    with pytest.raises(PermissionError, match="Permission denied. Choose an output location"):
        ensure_writable(tmp_path / "ro")


def test_non_numeric_images_are_refused():
    image = np.ones((16, 16), np.complex64)
    with pytest.raises(ValueError, match="dtype complex64; give a grayscale or RGB image"):
        segmenter().segment(image)


def test_resume_elsewhere_uses_this_machines_device_and_dimensions(tmp_path, cells):
    config = tiny_config(train={"device": "cuda:3"})
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "gpu.pt", config=config,
                    model_state=build_network(config).state_dict())
    setup = prepare_training(TrainingRequest(samples=[Sample("a", *cells)],
                                             resume=tmp_path / "gpu.pt"))
    assert setup.config.train.device == "auto" and setup.config.steps == 3
    volume = np.zeros((6, 20, 20), np.uint8)
    volume[2:4, 5:10, 5:10] = 1
    with pytest.raises(ValueError, match="resume is a 2D model but the labels are 3D"):
        prepare_training(TrainingRequest(samples=[Sample("v", volume.astype(np.float32),
                                                         volume)],
                                         resume=tmp_path / "gpu.pt"))


def test_a_huge_input_size_is_refused_before_the_setup_allocates(tmp_path, capsys, cells):
    """`colorrl train --size 60000` used to allocate 26.8 GiB in the automatic T before any
    memory check; now the setup's own needs are checked first, in a few MB."""
    import tracemalloc

    request = TrainingRequest(samples=[Sample("a", *cells)], ndim=2,
                              settings={"input_size": 60000, "train.device": "cpu"})
    tracemalloc.start()
    try:
        with pytest.raises(runtime.MemoryCheckError, match="Preparing 1 training samples at "
                           "input size 60000 x 60000"):
            prepare_training(request)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024**2


def test_training_that_cannot_fit_even_with_one_step_is_refused_before_auto_t(cells):
    request = TrainingRequest(samples=[Sample("a", *cells)], ndim=2, settings={
        "input_size": 4096, "train.batch_size": 64, "train.device": "cpu"})
    with pytest.raises(runtime.MemoryCheckError, match=r"\(even with T = 1\)"):
        prepare_training(request)
