"""Qt-free engine of napari-colorrl: numpy/torch only, usable on a headless node.

Submodules are imported on demand (``from napari_colorrl.core.metrics import evaluate``), so
importing ``napari_colorrl.core`` does not import torch.
"""
