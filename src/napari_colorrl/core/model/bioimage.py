"""Reading bioimage.io model packages that ``colorrl export`` wrote, as checkpoints.

A package is a zip file holding ``rdf.yaml`` (the bioimage.io description, spec 0.5), the
weights twice (TorchScript for other tools, a ``pytorch_state_dict`` with its architecture
source ``coloring_network.py``), test tensors, covers and a README (``bioimage_export`` writes
it). Its ``config.napari-colorrl`` section marks it as this project's and holds the model's
whole ``ColorRLConfig``, so napari-colorrl reads it like a checkpoint:

1. the zip's directory is checked first (at most ``MAX_MEMBERS`` members; ``rdf.yaml`` at most
   ``MAX_RDF_BYTES`` uncompressed, so a zip bomb is refused before anything is inflated);
2. ``rdf.yaml`` is parsed as plain YAML (anchors and aliases refused), its marker and config
   checked against the settings table, and the network's size estimated from the config
   (``checkpoint_checks.check_network_size``) before anything is built or read further;
3. the state-dict member's declared size must fit that network, its bytes must match the
   sha256 in ``rdf.yaml``, and it is read with ``torch.load(weights_only=True)``
   (``checkpoint.read_plain_data``) and checked tensor by tensor (``check_model_state``).

Nothing else in the zip is read: the TorchScript file and the architecture source are for
other tools and never run here. Nothing is extracted to disk.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from ..config import ColorRLConfig
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, read_plain_data
from .checkpoint_checks import check_model_state, check_network_size, weight_bytes

#: The section of ``rdf.yaml``'s ``config`` that marks a package as written by napari-colorrl.
CONFIG_KEY = "napari-colorrl"
PACKAGE_FORMAT = "napari-colorrl-bioimageio"
PACKAGE_FORMAT_VERSION = 1
#: Name of the architecture source inside a package (a copy of ``coloring_network.py``).
ARCHITECTURE_FILE = "coloring_network.py"
ARCHITECTURE_CALLABLE = "ColorRLColoring"
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
MAX_RDF_BYTES = 1024**2
MAX_MEMBERS = 1000
PACKAGE_SUFFIX = ".zip"


class PackageError(CheckpointError):
    """A file that cannot be used as a ColorRL bioimage.io package (the message says why)."""


def is_package(path: str | Path) -> bool:
    """True for a path named ``*.zip``: read it as a bioimage.io package, not a checkpoint
    (a torch checkpoint is a zip file too, so the name decides, not the content)."""
    return Path(path).suffix.lower() == PACKAGE_SUFFIX


def load_model_file(path: str | Path, map_location: Any = "cpu") -> Checkpoint:
    """The model in a checkpoint or in a package (``*.zip``): for whatever needs only its
    config and weights (inference, export, fine-tuning), never to resume training. A bundled
    model tiles as this version's measured defaults do (``bundled.with_current_tiling``)."""
    loader = load_package if is_package(path) else load_checkpoint
    checkpoint = loader(path, map_location=map_location)
    from .bundled import is_bundled, with_current_tiling

    return with_current_tiling(checkpoint) if is_bundled(path) else checkpoint


def load_package(path: str | Path, map_location: Any = "cpu") -> Checkpoint:
    """The model of a package written by ``colorrl export``, as a ``Checkpoint`` (config and
    network weights; no optimizer state). PackageError (a CheckpointError) for anything else:
    a missing, corrupt or oversized file, a bioimage.io package of another program, a config
    out of the settings' ranges or asking for an absurd network, weights that would unpickle
    objects or do not fit the config. Nothing from the package runs."""
    path = Path(path)
    if not path.exists():
        raise PackageError(f"Package file {path} does not exist.")
    if not path.is_file():
        raise PackageError(f"Package {path} is a folder, not a zip file; give the .zip itself.")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise PackageError(
            f"{path} is not a readable zip file ({_first_line(err)}): a bioimage.io package is a "
            f".zip written by `colorrl export`; copy it again if it was transferred."
        ) from None
    with archive:
        rdf, name = _read_rdf(archive, path)
        marker = _marker(rdf, path, name)
        config = _config(marker, path)
        try:
            state = _read_weights(archive, rdf, config, path, map_location)
            check_model_state(state, config, path, what="pytorch_state_dict weights",
                              container="package")
        except PackageError:
            raise
        except CheckpointError as err:  # the checkpoint checks' messages, as a PackageError
            raise PackageError(str(err)) from None
    return Checkpoint(config=config, model_state=state, step=_count(marker.get("step")),
                      episodes=_count(marker.get("episodes")),
                      extra={"bioimageio_name": name, **({"training_scale": marker[
                          "training_scale"]} if "training_scale" in marker else {})},
                      version=str(marker.get("version", ""))[:40])


# --- the steps ---------------------------------------------------------------------------------
def _read_rdf(archive: zipfile.ZipFile, path: Path) -> tuple[dict[str, Any], str]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise PackageError(f"Package {path} was refused: it holds {len(infos)} files, more than "
                           f"the {MAX_MEMBERS} a model package can need.")
    members = {info.filename: info for info in infos}
    found = next((members[n] for n in RDF_NAMES if n in members), None)
    if found is None:
        raise PackageError(
            f"{path} is a zip file but not a bioimage.io model package: it has no rdf.yaml. "
            f"Give a package written by `colorrl export`, or a checkpoint (.pt).")
    text = _read_member(archive, found, MAX_RDF_BYTES, path, "its rdf.yaml").decode(
        "utf-8", errors="replace")
    rdf = _safe_yaml(text, path)
    if not isinstance(rdf, dict):
        raise PackageError(f"The rdf.yaml of {path} is not a bioimage.io description (a YAML "
                           f"mapping); the package is damaged.")
    name = str(rdf.get("name", "?"))[:80]
    kind, version = rdf.get("type"), str(rdf.get("format_version", ""))
    if kind != "model":
        raise PackageError(f"{path} is a bioimage.io {kind!r} description, not a model; give a "
                           f"model package written by `colorrl export`.")
    if not version.startswith("0.5."):
        raise PackageError(
            f"{path} is a bioimage.io model of format {version or '?'}, not a ColorRL model "
            f"exported by napari-colorrl (spec 0.5). Run it with a tool that runs bioimage.io "
            f"models (bioimageio.core, deepImageJ, ilastik, QuPath).")
    return rdf, name


def _marker(rdf: dict[str, Any], path: Path, name: str) -> dict[str, Any]:
    config = rdf.get("config")
    marker = config.get(CONFIG_KEY) if isinstance(config, dict) else None
    if not isinstance(marker, dict) or marker.get("format") != PACKAGE_FORMAT:
        raise PackageError(
            f"{path} is a bioimage.io model package ({name!r}) but not a ColorRL model exported "
            f"by napari-colorrl: its rdf.yaml has no config.{CONFIG_KEY} section. napari-colorrl "
            f"runs only its own models; run this one with a tool that runs bioimage.io models "
            f"(bioimageio.core, deepImageJ, ilastik, QuPath), or give a package written by "
            f"`colorrl export` or a checkpoint.")
    version = marker.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise PackageError(f"Package {path} has no valid config.{CONFIG_KEY}.format_version; "
                           f"it is damaged.")
    if version > PACKAGE_FORMAT_VERSION:
        raise PackageError(
            f"Package {path} was exported by napari-colorrl {marker.get('version', '?')} in "
            f"package format {version}; this napari-colorrl reads up to format "
            f"{PACKAGE_FORMAT_VERSION}. Upgrade napari-colorrl to load it.")
    return marker


def _config(marker: dict[str, Any], path: Path) -> ColorRLConfig:
    data = marker.get("colorrl_config")
    if not isinstance(data, dict):
        raise PackageError(f"Package {path} holds no ColorRL configuration "
                           f"(config.{CONFIG_KEY}.colorrl_config); it is damaged.")
    try:
        config = ColorRLConfig.from_dict(data)
    except (KeyError, TypeError, ValueError) as err:
        raise PackageError(f"Package {path} holds an unusable configuration: {err}") from None
    try:
        check_network_size(config)
    except ValueError as err:
        raise PackageError(f"Package {path} was refused: {err}") from None
    return config


def _read_weights(archive: zipfile.ZipFile, rdf: dict[str, Any], config: ColorRLConfig,
                  path: Path, map_location: Any) -> Any:
    weights = rdf.get("weights")
    entry = weights.get("pytorch_state_dict") if isinstance(weights, dict) else None
    source = entry.get("source") if isinstance(entry, dict) else None
    if not isinstance(source, str):
        raise PackageError(f"Package {path} has no pytorch_state_dict weights in its rdf.yaml; "
                           f"it is damaged. Export the model again.")
    member = PurePosixPath(source)
    if "://" in source or member.is_absolute() or ".." in member.parts:
        raise PackageError(f"Package {path} was refused: its weights {source!r} are not a file "
                           f"inside the package (napari-colorrl never downloads or reads files "
                           f"outside it).")
    try:
        info = archive.getinfo(str(member))
    except KeyError:
        raise PackageError(f"Package {path} names the weights file {source!r}, which it does not "
                           f"hold; it is damaged. Export the model again.") from None
    # float32 weights and torch's per-tensor records: the float64 copy of the weights is the
    # most a state_dict of this network can need.
    limit = 2 * weight_bytes(config) + 1024**2
    data = _read_member(archive, info, limit, path, f"its weights {source!r}")
    expected = entry.get("sha256")
    if isinstance(expected, str) and hashlib.sha256(data).hexdigest() != expected.lower():
        raise PackageError(f"The weights {source!r} of package {path} do not match their sha256 "
                           f"in rdf.yaml: the file is damaged or was edited. Export the model "
                           f"again.")
    return read_plain_data(io.BytesIO(data), f"The weights {source!r} of package {path}",
                           map_location)


# --- helpers ------------------------------------------------------------------------------------
def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, path: Path,
                 what: str) -> bytes:
    """The bytes of one member, refused by its size in the zip's directory before inflating
    (``ZipFile`` reads no more than that declared size, and checks the CRC)."""
    if info.file_size > limit:
        raise PackageError(
            f"Package {path} was refused: {what} would inflate to {_mib(info.file_size)}, more "
            f"than the {_mib(limit)} it can need (a damaged or crafted zip file).")
    try:
        return archive.read(info)
    except Exception as err:  # BadZipFile (CRC), zlib.error, EOFError, NotImplementedError, ...
        raise PackageError(f"Package {path} is damaged: {what} cannot be read "
                           f"({_first_line(err)}). Copy or export it again.") from None


def _safe_yaml(text: str, path: Path) -> Any:
    """Plain YAML data; anchors/aliases are refused (they can multiply a small file into a huge
    structure) and so are tags that would build Python objects (a safe loader)."""
    import yaml

    loader = _yaml_loader()
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise PackageError(f"Package {path} was refused: its rdf.yaml uses YAML anchors "
                                   f"or aliases, which `colorrl export` never writes.")
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as err:
        raise PackageError(f"The rdf.yaml of {path} is not valid YAML ({_first_line(err)}); the "
                           f"package is damaged.") from None


@functools.cache
def _yaml_loader() -> type:
    """PyYAML's safe loader that also reads YAML 1.2 floats such as ``1e-05`` (bioimageio.spec
    writes YAML 1.2; YAML 1.1 would read them as text)."""
    import yaml

    loader = type("PackageLoader", (getattr(yaml, "CSafeLoader", yaml.SafeLoader),), {})
    loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"))
    return loader


def _count(value: Any) -> int:
    """A training counter of the marker (informative only): 0 unless a whole number."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"
