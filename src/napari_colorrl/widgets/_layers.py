"""Between napari layers and the core's arrays.

Layers -> training samples (``samples_from_layers``), results -> Labels layers that are replaced
on a re-run only while they hold what the dock wrote (``write_result``), and the layer pickers
the docks share (``LayerCombo``, ``LayerPairList``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QPushButton, QToolButton, QVBoxLayout, QWidget

#: Metadata key of every layer the docks write (so pickers can leave results out).
RESULT_KEY = "colorrl"


def layer_array(layer: Layer) -> Any:
    """The full-resolution data of a layer (the first level of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def spatial_shape(layer: Layer) -> tuple[int, ...]:
    """Shape without the colour axis of an RGB(A) image."""
    shape = tuple(layer_array(layer).shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def frame_indices(shape: tuple[int, ...], ndim: int) -> list[tuple[int, ...]]:
    """Leading indices that split an array of spatial ``shape`` into ``ndim``-D frames:
    ``[()]`` when it is a single image or volume."""
    return list(np.ndindex(*shape[: max(0, len(shape) - ndim)]))


def pair_problem(image: Layer | None, labels: Layer | None, ndim: int) -> str | None:
    """Why an (image, labels) pair cannot train a ``ndim``-D model, or None when it can."""
    if image is None:
        return "Choose an image layer."
    if labels is None:
        return f"Choose the Labels layer that goes with {image.name!r}."
    channels = _channel_axis(image, labels) is not None  # e.g. (C, Y, X) next to (Y, X)
    if not channels and spatial_shape(image) != spatial_shape(labels):
        return (
            f"{image.name!r} has shape {spatial_shape(image)} but {labels.name!r} has shape "
            f"{spatial_shape(labels)}: an image and its labels must have the same shape."
        )
    if labels.ndim < ndim:
        return f"{labels.name!r} is {labels.ndim}D; a {ndim}D model needs {ndim}D labels."
    if labels.ndim > ndim + 1:
        kind = "2D images or stacks of 2D frames" if ndim == 2 else "volumes or stacks of them"
        return f"{labels.name!r} is {labels.ndim}D; a {ndim}D model trains on {kind}."
    return None


def _channel_axis(image: Layer, labels: Layer) -> int | None:
    """0 or -1 when a non-RGB image layer holds up to 4 channels first or last around the
    labels' shape (e.g. (2, Y, X) with (Y, X) labels); None otherwise."""
    shape, target = spatial_shape(image), spatial_shape(labels)
    if getattr(image, "rgb", False) or len(shape) != len(target) + 1:
        return None
    if shape[1:] == target and shape[0] <= 4:
        return 0
    if shape[:-1] == target and shape[-1] <= 4:
        return -1
    return None


@dataclass
class SampleScan:
    """Samples found in layers: frames or volumes with at least one labelled pixel."""

    samples: list = field(default_factory=list)
    skipped: int = 0
    untouched: int = 0  # frames of a result layer the user did not correct (not used)

    def extend(self, other: SampleScan) -> None:
        self.samples.extend(other.samples)
        self.skipped += other.skipped
        self.untouched += other.untouched


def samples_from_layers(image: Image, labels: Labels, ndim: int) -> SampleScan:
    """``core.io.Sample``\\ s from a pair of layers; a layer one axis deeper than ``ndim`` is a
    stack, split into frames (or volumes). Frames without any label are skipped and counted; of
    a result layer the segmentation dock wrote, only the frames the user corrected are used."""
    from napari_colorrl.core.data.files import Sample, as_label_array

    image_data, label_data = layer_array(image), layer_array(labels)
    if _channel_axis(image, labels) == 0:  # channels first: move them last, like RGB
        image_data = np.moveaxis(np.asarray(image_data), 0, -1)
    scan = SampleScan()
    corrected = corrected_frames(labels)  # a result layer: only what the user corrected
    for index in frame_indices(spatial_shape(labels), ndim):
        if corrected is not None and index not in corrected:
            scan.untouched += 1
            continue
        frame_labels = as_label_array(np.asarray(label_data[index]), source=repr(labels.name))
        if not frame_labels.any():
            scan.skipped += 1
            continue
        suffix = f"[{', '.join(map(str, index))}]" if index else ""
        scan.samples.append(Sample(
            name=f"{image.name}{suffix}",
            image=np.asarray(image_data[index]),
            labels=frame_labels,
        ))
    return scan


def data_fingerprint(data: Any) -> str:
    """A hash of an array's dtype, shape and bytes: changes with any edit of the data. A lazy
    array (a zarr-backed result) is read in slabs of its first axis, never whole; the hash is
    the same as of the array in memory."""
    import hashlib

    if not isinstance(data, np.ndarray) and len(getattr(data, "shape", ())) > 1:
        dtype, shape = np.dtype(data.dtype), tuple(data.shape)
        digest = hashlib.blake2b(f"{dtype.str}{shape}".encode(), digest_size=16)
        per_row = max(1, int(np.prod(shape[1:])) * dtype.itemsize)
        step = max(1, (64 * 1024**2) // per_row)
        for start in range(0, shape[0], step):
            slab = np.ascontiguousarray(np.asarray(data[start:start + step]))
            digest.update(slab.view(np.uint8).reshape(-1) if slab.size else b"")
        return digest.hexdigest()
    array = np.ascontiguousarray(np.asarray(data))
    digest = hashlib.blake2b(f"{array.dtype.str}{array.shape}".encode(), digest_size=16)
    digest.update(array.view(np.uint8).reshape(-1) if array.size else b"")
    return digest.hexdigest()


def result_unedited(layer: Layer) -> bool:
    """True for a layer a dock wrote whose data is still exactly what the dock wrote."""
    info = layer.metadata.get(RESULT_KEY) if isinstance(layer.metadata, dict) else None
    if not isinstance(info, dict) or "data_hash" not in info:
        return False
    return info["data_hash"] == data_fingerprint(layer_array(layer))


def free_name(viewer: Any, name: str) -> str:
    """``name``, or ``name [2]``, ``name [3]``, ... : the first one no layer has."""
    if name not in viewer.layers:
        return name
    n = 2
    while f"{name} [{n}]" in viewer.layers:
        n += 1
    return f"{name} [{n}]"


def write_result(viewer: Any, data: np.ndarray, name: str, like: Layer, previous: str | None = None,
                 **kwargs: Any) -> Labels:
    """Write a result into the layer ``previous`` (default ``name``) only when a dock wrote it and
    it is unchanged since; otherwise, a layer the user made or edited is kept and the result goes
    to a new layer ``name [2]`` (``free_name``). The layer's metadata records a hash of the data
    written (``result_unedited``)."""
    target = previous if previous is not None else name
    layer = viewer.layers[target] if target in viewer.layers else None
    if layer is not None and not (isinstance(layer, Labels) and result_unedited(layer)):
        target = free_name(viewer, name)
    layer = upsert_labels(viewer, data, target, like, **kwargs)
    info = dict(layer.metadata.get(RESULT_KEY, {}))
    written = layer_array(layer)
    info["data_hash"] = data_fingerprint(written)
    # One hash per frame of a stack: which frames the user corrected (``corrected_frames``).
    info["frame_hashes"] = ([data_fingerprint(frame) for frame in written]
                            if info.get("stack_of_frames") else [info["data_hash"]])
    layer.metadata = {**layer.metadata, RESULT_KEY: info}
    return layer


def corrected_frames(layer: Layer) -> set[tuple[int, ...]] | None:
    """For a result layer a dock wrote: the frame indices (``frame_indices``' tuples; ``()``
    for a single image or volume) whose data the user has changed since. None for any other
    layer (all of it is the user's)."""
    info = layer.metadata.get(RESULT_KEY) if isinstance(layer.metadata, dict) else None
    if not isinstance(info, dict) or "frame_hashes" not in info:
        return None
    data, hashes = layer_array(layer), info["frame_hashes"]
    if not info.get("stack_of_frames"):
        return set() if data_fingerprint(data) == hashes[0] else {()}
    if len(data) != len(hashes):
        return {(i,) for i in range(len(data))}  # reshaped since: all of it is the user's now
    return {(i,) for i, frame in enumerate(data) if data_fingerprint(frame) != hashes[i]}


def upsert_labels(viewer: Any, data: np.ndarray, name: str, like: Layer, **kwargs: Any) -> Labels:
    """Put ``data`` in the Labels layer called ``name``, adding it only when it is not there, so
    a re-run replaces results. Scale and translate come from the input layer ``like``."""
    placement = {"scale": like.scale, "translate": like.translate}
    if name in viewer.layers and isinstance(viewer.layers[name], Labels):
        layer = viewer.layers[name]
        layer.data = data
        layer.scale, layer.translate = placement["scale"], placement["translate"]
        layer.metadata = {**layer.metadata, **kwargs.pop("metadata", {})}
        for key, value in kwargs.items():
            if key != "visible":  # keep what the user chose
                setattr(layer, key, value)
        return layer
    return viewer.add_labels(data, name=name, **placement, **kwargs)


class LayerCombo(QComboBox):
    """Names of the viewer's layers of one type.

    The dock's ``reset_choices`` refreshes it: napari calls that on every dock widget when layers
    are added, removed, reordered or renamed, and stops when the dock is closed.
    """

    def __init__(self, viewer: Any, layer_type: type, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer, self.layer_type = viewer, layer_type
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(6)  # narrow docks: the full name is in the tooltip
        self.currentTextChanged.connect(self.setToolTip)
        self.refresh()

    def candidates(self) -> list[Layer]:
        """Layers of the type; results a dock wrote are left out until the user edits them."""
        return [
            layer for layer in self.viewer.layers
            if isinstance(layer, self.layer_type)
            and (RESULT_KEY not in layer.metadata or not result_unedited(layer))
        ]

    def refresh(self, *_: Any) -> None:
        current = self.currentText()
        names = [layer.name for layer in self.candidates()]
        if names == [self.itemText(i) for i in range(self.count())]:
            return
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        self.setCurrentIndex(names.index(current) if current in names else -1)
        self.blockSignals(False)
        if not current or current not in names:
            self.setCurrentIndex(0 if names else -1)  # emits: a new default

    def layer(self) -> Layer | None:
        name = self.currentText()
        if name and name in self.viewer.layers:
            return self.viewer.layers[name]
        return None

    def select(self, layer: Layer | str) -> None:
        self.refresh()
        self.setCurrentText(layer if isinstance(layer, str) else layer.name)


class _PairRow(QWidget):
    def __init__(self, viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.image = LayerCombo(viewer, Image)
        self.labels = LayerCombo(viewer, Labels)
        self.image.setToolTip("Image layer (2D image, 3D volume or stack of 2D frames).")
        self.labels.setToolTip("Its instance labels (0 = background), same shape as the image.")
        self.remove = QToolButton()
        self.remove.setText("✕")
        self.remove.setToolTip("Remove this pair.")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for widget in (self.image, self.labels):
            row.addWidget(widget, 1)
        row.addWidget(self.remove)
        self.image.currentTextChanged.connect(self.match_labels)
        self.match_labels()

    def match_labels(self, *_: Any) -> None:
        """Pick a Labels layer of the image's shape, when the current one does not fit."""
        image, labels = self.image.layer(), self.labels.layer()
        if image is None or (labels is not None and spatial_shape(labels) == spatial_shape(image)):
            return
        for candidate in self.labels.candidates():
            if spatial_shape(candidate) == spatial_shape(image):
                self.labels.select(candidate)
                return


class LayerPairList(QWidget):
    """Rows of (image layer, Labels layer) pickers with an "add" button."""

    changed = Signal()

    def __init__(self, viewer: Any, add_text: str, rows: int = 1, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.rows: list[_PairRow] = []
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.add_button = QPushButton(add_text)
        self.add_button.clicked.connect(lambda: self.add_row())
        self._layout.addWidget(self.add_button)
        for _ in range(rows):
            self.add_row()

    def add_row(self, image: Layer | str | None = None, labels: Layer | str | None = None):
        row = _PairRow(self.viewer, self)
        if image is not None:
            row.image.select(image)
        if labels is not None:
            row.labels.select(labels)
        for combo in (row.image, row.labels):
            combo.currentTextChanged.connect(self.changed)
        row.remove.clicked.connect(lambda: self.remove_row(row))
        self.rows.append(row)
        self._layout.insertWidget(len(self.rows) - 1, row)
        self.changed.emit()
        return row

    def remove_row(self, row: _PairRow) -> None:
        self.rows.remove(row)
        row.setParent(None)
        row.deleteLater()
        self.changed.emit()

    def reset_choices(self, *_: Any) -> None:
        for row in self.rows:
            row.image.refresh()
            row.labels.refresh()

    def set_pairs(self, pairs: list[tuple[Layer | str, Layer | str]]) -> None:
        for row in list(self.rows):
            self.remove_row(row)
        for image, labels in pairs:
            self.add_row(image, labels)

    def pairs(self) -> list[tuple[Layer | None, Layer | None]]:
        return [(row.image.layer(), row.labels.layer()) for row in self.rows]
