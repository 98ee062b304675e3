"""The controls of the "ColorRL Segmentation" dock and their layout, without behaviour: the
dock (``_segmentation.SegmentationWidget``) connects them and runs the model."""

from __future__ import annotations

from typing import Any

from napari.layers import Image
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_colorrl.widgets._layers import LayerCombo
from napari_colorrl.widgets._settings import setting_editor


class SegmentationForm(QWidget):
    """The dock's fields (image, model, device, min. size, steps used, object size, tiles), its
    buttons, progress bar, step slider and status line."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        from napari_colorrl.core.runtime import available_devices

        self.setMinimumWidth(340)
        self.image = LayerCombo(napari_viewer, Image)
        self.image.setToolTip("2D image, 3D volume, or a stack of 2D frames for a 2D model.")
        self.model = QComboBox()
        self.model.setToolTip("The checkpoint just trained comes first, then bundled models and "
                              "files you chose (checkpoints .pt, bioimage.io packages .zip "
                              "written by colorrl export).")
        self.browse_button = browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose a checkpoint (.pt) or a bioimage.io package (.zip).")
        model_row = QWidget()
        row = QHBoxLayout(model_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.model, 1)
        row.addWidget(browse)
        self.device = QComboBox()
        self.device.addItems(available_devices())
        self.min_size = QSpinBox()
        self.min_size.setRange(-1, 10**8)
        self.min_size.setValue(-1)
        self.min_size.setSpecialValueText("model default")
        self.min_size.setToolTip("Objects smaller than this (pixels/voxels) are removed. Changing "
                                 "it re-runs only the post-processing.")
        self.depth = QSpinBox()
        self.depth.setRange(-1, 16)
        self.depth.setValue(-1)
        self.depth.setSpecialValueText("model default")
        self.depth.setToolTip("Make the instances from the colors after the first k coloring "
                              "steps (0: all T). The model's default was chosen at training on "
                              "its selection images. Takes effect at the next Segment.")
        self.object_size = QLineEdit()
        self.object_size.setPlaceholderText("the model's training scale")
        self.object_size.setToolTip(
            "Diameter of the objects in this image: one number, or one per axis (Z, Y, X) for "
            "anisotropic volumes. The image is rescaled so its objects have the size the model "
            "was trained on. Empty: the model's training scale.")
        self.in_layer_units = QCheckBox("in the layer's units (its scale)")
        self.in_layer_units.setToolTip(
            "The object size is in the units of the layer's scale (e.g. um): it is divided by "
            "the layer's pixel size on each axis.")
        self.tile_size = setting_editor("inference.tile_size")
        self.tile_size.setText("")
        self.tile_size.setPlaceholderText("the model's")
        self.tile_overlap = setting_editor("inference.tile_overlap")
        self.tile_overlap.setMinimum(-1)
        self.tile_overlap.setSpecialValueText("the model's")
        self.tile_overlap.setValue(-1)
        self.run_button = QPushButton("Segment")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the tile at hand; no result layer is written.")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setFormat("idle")
        self.step_slider = QSlider(Qt.Orientation.Horizontal)
        self.step_slider.setRange(1, 1)
        self.step_slider.setEnabled(False)
        self.step_slider.setToolTip("Show the colors after the first k steps in 'X colors' (on "
                                    "top; 'X instances' shows again at the last step).")
        self.step_label = QLabel("colors after step –")
        self.retrain_button = QPushButton("Retrain on my corrections")
        self.retrain_button.setEnabled(False)
        self.retrain_button.setToolTip(
            "After correcting 'X instances' with napari's label tools (paint, erase, fill, new "
            "label): fine-tune the model that made it on the corrected frames, in the training "
            "dock. The next segmentation uses the new model.")
        self.status = QLabel()
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.image)
        form.addRow("model", model_row)
        form.addRow("device", self.device)
        form.addRow("min. size", self.min_size)
        form.addRow("steps used", self.depth)
        form.addRow("object size", self.object_size)
        form.addRow("", self.in_layer_units)
        form.addRow("tile size", self.tile_size)
        form.addRow("tile overlap", self.tile_overlap)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 1)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.step_label)
        layout.addWidget(self.step_slider)
        layout.addWidget(self.retrain_button)
        layout.addWidget(self.status)
        layout.addStretch(1)
