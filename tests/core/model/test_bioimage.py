"""bioimage.io packages: the coloring module, export (passed through bioimageio.core's own model
test), reading a package back, and every crafted package refused before anything runs."""

from __future__ import annotations

import ast
import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_config, tiny_samples, trained_model
from napari_colorrl.core.inference import Segmenter
from napari_colorrl.core.model import bioimage, checkpoint
from napari_colorrl.core.model.bioimage import PackageError, load_package
from napari_colorrl.core.model.checkpoint import CheckpointError, load_checkpoint
from napari_colorrl.core.model.coloring_network import ColorRLColoring
from napari_colorrl.core.model.networks import build_network

pytest.importorskip("bioimageio.spec")

from napari_colorrl.core.model.bioimage_export import export_package  # noqa: E402
from napari_colorrl.core.model.bioimage_rdf import architecture_kwargs  # noqa: E402

#: bioimageio.spec writes YAML 1.2 (``1e-05`` is a number), as the package reader reads it.
YAML12 = bioimage._yaml_loader()
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny 2D model trained for 4 updates, and its package (exported with a real sample)."""
    folder = tmp_path_factory.mktemp("bioimage")
    model = trained_model(folder / "tiny.pt")
    sample = tiny_samples(2, n=3)[2].image
    package = export_package(model, folder / "tiny.zip", sample=sample,
                             training_data="synthetic cells").path
    return model, package


@pytest.fixture(scope="module")
def trained_3d(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bioimage3d")
    model = trained_model(folder / "tiny3d.pt", ndim=3)
    return model, export_package(model, folder / "tiny3d.zip").path


def _bioimageio_test(path: Path):
    from bioimageio.core import test_model

    summary = test_model(path)
    failed = [f"{d.name}: {[e.msg for e in d.errors]}" for d in summary.details
              if d.status != "passed"]
    return summary, failed


# --- the coloring module ---------------------------------------------------------------------
def _decisive_network(config):
    """The network of ``config`` with decisive weights: the actions are not all near a tie."""
    torch.manual_seed(1)
    network = build_network(config)
    with torch.no_grad():
        for p in network.parameters():
            p.normal_(0, 0.5)
    return network


@pytest.mark.parametrize("ndim, attention, shape, coordinates", [
    (2, True, (37, 29), False), (2, False, (16, 16), False), (3, False, (11, 13, 17), False),
    (3, True, (8, 8, 8), False), (2, True, (37, 29), True), (3, False, (11, 13, 17), True)])
def test_coloring_module_gives_the_inference_color_map(ndim, attention, shape, coordinates):
    config = tiny_config(ndim, network={"attention": attention, "coordinates": coordinates},
                         input_mode="crop")
    network = _decisive_network(config)
    module = ColorRLColoring(**architecture_kwargs(config))
    assert list(module.state_dict()) == list(network.state_dict())
    module.load_state_dict(network.state_dict())
    module.eval()
    scripted = torch.jit.script(module)
    segmenter = Segmenter(network, config, device="cpu")  # its own fast layout, as in use
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    steps, _ = segmenter.color(image)
    expected = segmenter.color_maps(image)[1]
    tensor = torch.from_numpy(segmenter.network_input(image)[0])[None]
    with torch.no_grad():
        for run in (module, scripted):
            colors, step_maps = run(tensor)
            assert colors.dtype == torch.int32 and step_maps.dtype == torch.uint8
            np.testing.assert_array_equal(colors[0].numpy(), expected)
            np.testing.assert_array_equal(step_maps[0].numpy(), steps)
    assert len(np.unique(expected)) > 2


def test_coloring_module_runs_only_the_models_depth():
    """``passes`` = k: the first k argmax steps, the channels of the steps not taken left 0 (as
    ``run_coloring(passes=k)`` and inference with a depth do); k step maps out, colors < 2^k."""
    from napari_colorrl.core.method.coloring import run_coloring

    config = tiny_config(2, steps=3, depth=2, input_mode="crop")
    network = _decisive_network(config)
    module = ColorRLColoring(**architecture_kwargs(config))
    module.load_state_dict(network.state_dict())
    tensor = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        colors, step_maps = module.eval()(tensor)
    reference = run_coloring(network.eval(), tensor, 3, passes=2)
    assert step_maps.shape == (1, 2, 24, 24) and int(colors.max()) < 4
    np.testing.assert_array_equal(colors.numpy(), reference.colors)
    np.testing.assert_array_equal(step_maps.numpy(), reference.steps)
    with pytest.raises(ValueError, match="passes must be 0"):
        ColorRLColoring(**{**architecture_kwargs(config), "passes": 4})


def test_coloring_module_imports_only_torch():
    source = Path(bioimage.__file__).with_name("coloring_network.py")
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import would not work inside a package"
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "typing", "torch"}


# --- export ----------------------------------------------------------------------------------
def test_trained_model_package_passes_the_bioimageio_core_model_test(trained, no_network):
    summary, failed = _bioimageio_test(trained[1])
    assert summary.status == "passed", failed
    names = " ".join(d.name for d in summary.details)
    assert "(torchscript)" in names and "(pytorch_state_dict)" in names


def test_3d_crop_model_package_passes_the_bioimageio_core_model_test(trained_3d, no_network):
    summary, failed = _bioimageio_test(trained_3d[1])
    assert summary.status == "passed", failed
    assert sum("size parameter n" in d.name for d in summary.details) >= 2  # sizes tried


@pytest.mark.slow  # 17 s alone, 119 s in a full-suite run on the shared 2-core machine
def test_bundled_nuclei_2d_exports_and_passes_the_bioimageio_core_model_test(tmp_path,
                                                                            no_network):
    result = export_package("nuclei-2d", tmp_path / "nuclei-2d.zip")
    summary, failed = _bioimageio_test(result.path)
    assert summary.status == "passed", failed
    rdf = _rdf(result.path)
    assert rdf["training_data"]["license"] == "CC0-1.0" and "DSB" in rdf["training_data"]["name"]


def test_package_holds_what_the_issue_lists(trained):
    model, package = trained
    rdf = _rdf(package)
    config = load_checkpoint(model).config
    assert rdf["type"] == "model" and rdf["format_version"].startswith("0.5.")
    (image,) = rdf["inputs"]
    assert [a["type"] for a in image["axes"]] == ["batch", "channel", "space", "space"]
    assert [a.get("id") for a in image["axes"][2:]] == ["y", "x"]
    assert image["axes"][2]["size"] == config.input_size[0]  # a 'resize' model: fixed size
    ops = [p for p in image["preprocessing"] if p["id"] != "ensure_dtype"]
    assert ops[0] == {"id": "scale_range", "kwargs": {
        "axes": ["y", "x"], "min_percentile": config.normalization.low,
        "max_percentile": config.normalization.high}}
    assert ops[1] == {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}}
    assert [o["id"] for o in rdf["outputs"]] == ["colors", "steps"]
    assert rdf["outputs"][1]["axes"][1]["channel_names"] == [f"step{t}" for t in (1, 2, 3)]
    weights = rdf["weights"]
    assert set(weights) == {"torchscript", "pytorch_state_dict"}
    assert weights["pytorch_state_dict"]["architecture"]["callable"] == "ColorRLColoring"
    assert rdf["license"] and rdf["training_data"]["name"] == "synthetic cells"
    assert any("10.48550/arXiv.2005.07058" == c.get("doi") for c in rdf["cite"])
    assert rdf["config"]["napari-colorrl"]["colorrl_config"] == config.to_dict()
    with zipfile.ZipFile(package) as archive:
        source = archive.read("coloring_network.py").decode()
        readme = archive.read(rdf["documentation"]["source"]).decode()
        cover = archive.read(rdf["covers"][0]["source"])
        test_input = np.load(io.BytesIO(archive.read(image["test_tensor"]["source"])))
        colors = np.load(io.BytesIO(archive.read(rdf["outputs"][0]["test_tensor"]["source"])))
    assert source == Path(bioimage.__file__).with_name("coloring_network.py").read_text()
    assert "connected components" in readme and f"smaller than {config.min_size}" in readme
    assert "## Validation" in readme and "10.48550/arXiv.2005.07058" in readme
    from PIL import Image

    assert Image.open(io.BytesIO(cover)).size == (512, 256)
    # The test output is napari-colorrl's own color map of the test input.
    segmenter = Segmenter.load(model, device="cpu")
    assert test_input.shape == (1, 1, *config.input_size) and test_input.dtype == np.float32
    np.testing.assert_array_equal(colors[0], segmenter.color_maps(test_input[0, 0])[1])
    assert len(np.unique(colors)) > 1


def test_a_model_with_a_depth_is_packaged_running_only_those_steps(trained, tmp_path,
                                                                  no_network):
    """A model whose depth k < T was chosen at training runs its first k steps in the package
    too: k step maps, colors below 2^k (no bits left for the reader to drop), the same colors
    and instances as napari-colorrl with the checkpoint; bioimageio.core's own test passes."""
    original = load_checkpoint(trained[0])
    path = tmp_path / "depth2.pt"
    checkpoint.save_checkpoint(path, config=original.config.replace(depth=2),
                               model_state=original.model_state)
    package = export_package(path, tmp_path / "depth2.zip",
                             sample=tiny_samples(2, n=3)[2].image).path
    rdf = _rdf(package)
    assert rdf["outputs"][1]["axes"][1]["channel_names"] == ["step1", "step2"]
    assert list(rdf["outputs"][0]["data"]["range"]) == [0, 3]
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]["passes"] == 2
    assert rdf["config"]["napari-colorrl"]["instances"]["depth"] == 2
    with zipfile.ZipFile(package) as archive:
        readme = archive.read(rdf["documentation"]["source"]).decode()
        test_input = np.load(io.BytesIO(archive.read(rdf["inputs"][0]["test_tensor"]["source"])))
        colors = np.load(io.BytesIO(archive.read(rdf["outputs"][0]["test_tensor"]["source"])))
    assert "runs the first 2 of them" in readme and "colors % " not in readme
    np.testing.assert_array_equal(
        colors[0], Segmenter.load(path, device="cpu").color_maps(test_input[0, 0])[1])
    assert colors.max() < 4
    image = tiny_samples(2, n=2, shape=(45, 38))[1].image
    np.testing.assert_array_equal(Segmenter.load(package, device="cpu").segment(image).instances,
                                  Segmenter.load(path, device="cpu").segment(image).instances)
    summary, failed = _bioimageio_test(package)
    assert summary.status == "passed", failed


def test_package_gives_the_checkpoint_instances(trained):
    model, package = trained
    image = tiny_samples(2, n=2, shape=(45, 38))[1].image
    from_checkpoint = Segmenter.load(model, device="cpu").segment(image)
    from_package = Segmenter.load(package, device="cpu").segment(image)
    np.testing.assert_array_equal(from_package.instances, from_checkpoint.instances)
    np.testing.assert_array_equal(from_package.colors, from_checkpoint.colors)
    assert from_package.instances.max() > 0
    original, loaded = load_checkpoint(model), load_package(package)
    assert loaded.config == original.config
    assert all(torch.equal(loaded.model_state[k], v) for k, v in original.model_state.items())


def test_3d_package_gives_the_checkpoint_instances(trained_3d):
    model, package = trained_3d
    volume = tiny_samples(3, n=1, shape=(13, 18, 21))[0].image
    np.testing.assert_array_equal(Segmenter.load(package, device="cpu").segment(volume).colors,
                                  Segmenter.load(model, device="cpu").segment(volume).colors)


def test_a_package_can_be_exported_again(trained, tmp_path):
    result = export_package(trained[1], tmp_path / "again.zip")
    assert load_package(result.path).config == load_package(trained[1]).config


def test_a_package_is_not_a_training_checkpoint_but_can_be_fine_tuned(trained, tmp_path):
    from napari_colorrl.core.training.setup import TrainingRequest, prepare_training
    from napari_colorrl.core.training.trainer import load_initial_weights

    with pytest.raises(CheckpointError, match="bioimage.io package .* not a training checkpoint"
                                              ".* fine-tune the package with --init"):
        load_checkpoint(trained[1])
    request = TrainingRequest(samples=tiny_samples(2, 3), ndim=2, init=trained[1], settings={
        "train.device": "cpu", "train.episodes": 2, "train.val_share": 0.0})
    setup = prepare_training(request)
    original = load_checkpoint(trained[0])
    assert setup.config.network == original.config.network
    assert setup.config.steps == original.config.steps
    network = build_network(setup.config)
    load_initial_weights(network, trained[1], setup.config)
    for key, value in network.state_dict().items():
        assert torch.equal(value, original.model_state[key].float()), key


def test_output_is_never_replaced_without_overwrite(trained, tmp_path):
    out = tmp_path / "mine.zip"
    out.write_bytes(b"the user's own file")
    with pytest.raises(ValueError, match="already exists.*--overwrite"):
        export_package(trained[0], out)
    assert out.read_bytes() == b"the user's own file"
    with pytest.raises(ValueError, match="must end in .zip"):
        export_package(trained[0], tmp_path / "model.pt")
    export_package(trained[0], out, overwrite=True)
    assert load_package(out).config == load_checkpoint(trained[0]).config
    assert [p.name for p in tmp_path.iterdir()] == ["mine.zip"]  # no temporary file left


# --- crafted packages ------------------------------------------------------------------------
def _rdf(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return yaml.load(archive.read("rdf.yaml"), Loader=YAML12)


def _rewrite(source: Path, target: Path, rdf=None, members=None, weights=None) -> Path:
    """A copy of the package ``source`` with an edited rdf (a function of the dict, or raw
    text), replaced or added ``members`` and, if given, new weights bytes whose sha256 is
    updated in the rdf (so the content itself is what gets checked)."""
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    description = yaml.load(files["rdf.yaml"], Loader=YAML12)
    if weights is not None:
        entry = description["weights"]["pytorch_state_dict"]
        files[entry["source"]] = weights
        entry["sha256"] = hashlib.sha256(weights).hexdigest()
    if callable(rdf):
        rdf(description)
    files["rdf.yaml"] = rdf.encode() if isinstance(rdf, str) else yaml.safe_dump(
        description).encode()
    files.update(members or {})
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return target


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture
def nothing_loads(monkeypatch):
    """Fails the test if weights are unpickled or a network is built."""
    def forbidden(*args, **kwargs):
        raise AssertionError("weights were read or a network was built")

    monkeypatch.setattr(bioimage, "read_plain_data", forbidden)
    monkeypatch.setattr(checkpoint, "build_network", forbidden, raising=False)
    from napari_colorrl.core.model import networks

    monkeypatch.setattr(networks, "build_network", forbidden)


class _Malicious:
    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_in_the_weights_is_refused_and_never_runs(trained, tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    monkeypatch.setattr(_Malicious, "marker", str(marker))
    state = dict(load_checkpoint(trained[0]).model_state)
    state["policy_head.bias"] = _Malicious()
    crafted = _rewrite(trained[1], tmp_path / "evil.zip", weights=_torch_bytes(state))
    with pytest.raises(CheckpointError, match="weights 'weights.pt' of package .* would import "
                                              "the Python object 'posix.system'"):
        load_package(crafted)
    with pytest.raises(CheckpointError):
        Segmenter.load(crafted, device="cpu")
    assert not marker.exists()


def test_absurd_network_is_refused_before_anything_is_read_or_built(trained, tmp_path,
                                                                    nothing_loads):
    def huge(rdf):
        # Every width within the settings' range, but about 10 GiB of weights.
        rdf["config"]["napari-colorrl"]["colorrl_config"]["network"]["features"] = [4096] * 4

    crafted = _rewrite(trained[1], tmp_path / "huge.zip", rdf=huge)
    with pytest.raises(PackageError, match="was refused: the network it describes .* "
                                           "would need .* GiB of weights"):
        load_package(crafted)


@pytest.mark.parametrize("edit, message", [
    (lambda rdf: rdf["config"]["napari-colorrl"]["colorrl_config"].update(steps=99),
     "unusable configuration"),
    (lambda rdf: rdf["config"]["napari-colorrl"]["colorrl_config"].update(mystery=1),
     "unusable configuration"),
    (lambda rdf: rdf["config"]["napari-colorrl"].update(format_version=99), "Upgrade"),
    (lambda rdf: rdf["config"].pop("napari-colorrl"), "not a ColorRL model exported by"),
    (lambda rdf: rdf.update(type="dataset"), "'dataset' description, not a model"),
    (lambda rdf: rdf.update(format_version="0.4.10"), "not a ColorRL model exported by"),
    (lambda rdf: rdf["weights"]["pytorch_state_dict"].update(source="../../outside.pt"),
     "not a file inside the package"),
    (lambda rdf: rdf["weights"]["pytorch_state_dict"].update(source="https://x.org/w.pt"),
     "not a file inside the package"),
    (lambda rdf: rdf["weights"]["pytorch_state_dict"].update(source="missing.pt"),
     "does not hold"),
    (lambda rdf: rdf["weights"].pop("pytorch_state_dict"), "no pytorch_state_dict weights"),
    (lambda rdf: rdf["weights"]["pytorch_state_dict"].update(sha256="0" * 64),
     "do not match their sha256"),
], ids=["out-of-range", "unknown-key", "newer", "foreign", "dataset", "old-spec", "traversal",
        "url", "missing-weights", "no-state-dict", "sha256"])
def test_crafted_descriptions_are_refused(trained, tmp_path, edit, message, nothing_loads):
    crafted = _rewrite(trained[1], tmp_path / "crafted.zip", rdf=edit)
    with pytest.raises(PackageError, match=message):
        load_package(crafted)


def test_a_bioimageio_model_of_another_program_is_refused_with_what_to_do(trained, tmp_path):
    foreign = _rewrite(trained[1], tmp_path / "other.zip",
                       rdf=lambda rdf: rdf.update(config={"bioimageio": {}}, name="UNet cells"))
    with pytest.raises(PackageError, match=r"a bioimage.io model package \('UNet cells'\) but "
                                           r"not a ColorRL model .*\(bioimageio.core, deepImageJ"):
        Segmenter.load(foreign, device="cpu")


def test_weights_that_do_not_fit_the_config_are_refused(trained, tmp_path):
    state = dict(load_checkpoint(trained[0]).model_state)
    state["policy_head.bias"] = torch.zeros(7)
    crafted = _rewrite(trained[1], tmp_path / "edited.zip", weights=_torch_bytes(state))
    with pytest.raises(PackageError, match="do not fit the network .*policy_head.bias"):
        load_package(crafted)
    crafted = _rewrite(trained[1], tmp_path / "foreign.zip", weights=_torch_bytes([1, 2]))
    with pytest.raises(PackageError, match="no valid pytorch_state_dict weights"):
        load_package(crafted)


def test_zip_bombs_and_oversized_members_are_refused_before_inflating(trained, tmp_path,
                                                                      nothing_loads, monkeypatch):
    bomb = bytes(64 * 1024**2)  # 64 MiB of zeros: about 64 KiB compressed
    crafted = _rewrite(trained[1], tmp_path / "bomb.zip", weights=bomb)
    assert crafted.stat().st_size < 1024**2
    inflated = []
    real_read = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read",
                        lambda self, name, *a: inflated.append(getattr(name, "filename", name))
                        or real_read(self, name, *a))
    with pytest.raises(PackageError, match="weights 'weights.pt' would inflate to 64.0 MiB"):
        load_package(crafted)
    assert inflated == ["rdf.yaml"]
    big_rdf = "name: x\n" + "#" * (2 * 1024**2)
    with pytest.raises(PackageError, match="its rdf.yaml would inflate to 2.0 MiB"):
        load_package(_rewrite(trained[1], tmp_path / "rdf.zip", rdf=big_rdf))
    many = {f"junk/{i}.txt": b"" for i in range(1001)}
    with pytest.raises(PackageError, match="holds 10.. files"):
        load_package(_rewrite(trained[1], tmp_path / "many.zip", members=many))


def test_yaml_aliases_and_python_tags_are_refused(trained, tmp_path, nothing_loads):
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    with pytest.raises(PackageError, match="anchors or aliases"):
        load_package(_rewrite(trained[1], tmp_path / "laughs.zip", rdf=laughs))
    tagged = "type: model\nname: !!python/object/apply:os.system ['touch x']\n"
    with pytest.raises(PackageError, match="not valid YAML"):
        load_package(_rewrite(trained[1], tmp_path / "tag.zip", rdf=tagged))


@pytest.mark.parametrize("kind", ["not-a-zip", "truncated", "no-rdf", "folder", "missing"])
def test_broken_files_named_zip_are_refused(trained, tmp_path, kind):
    path = tmp_path / "model.zip"
    if kind == "not-a-zip":
        path.write_bytes(os.urandom(2000))
    elif kind == "truncated":
        data = trained[1].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "no-rdf":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("weights.pt", b"123")
    elif kind == "folder":
        path.mkdir()
    message = {"not-a-zip": "not a readable zip file", "truncated": "not a readable zip file",
               "no-rdf": "has no rdf.yaml", "folder": "is a folder",
               "missing": "does not exist"}[kind]
    with pytest.raises(PackageError, match=message):
        load_package(path)


def test_the_torchscript_is_never_run_or_read(trained, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("TorchScript was loaded")

    monkeypatch.setattr(torch.jit, "load", forbidden)
    crafted = _rewrite(trained[1], tmp_path / "ts.zip",
                       members={"weights-torchscript.pt": b"not torchscript at all"})
    image = tiny_samples(2, n=1)[0].image
    np.testing.assert_array_equal(Segmenter.load(crafted, device="cpu").segment(image).instances,
                                  Segmenter.load(trained[0], device="cpu").segment(image).instances)


def test_a_package_keeps_the_training_scale(trained):
    """Issue 18: the scale the model was trained at travels with the package, so a model
    loaded from it segments at the same scale as from its checkpoint, without a warning."""
    import warnings

    from napari_colorrl.core.data.checks import ColorRLWarning

    model, package = trained
    saved = load_checkpoint(model).extra["training_scale"]
    assert load_package(package).extra["training_scale"] == saved
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColorRLWarning)
        segmenter = Segmenter.load(package, device="cpu")
    assert segmenter.scale == Segmenter.load(model, device="cpu").scale
    assert segmenter.scale.measured
