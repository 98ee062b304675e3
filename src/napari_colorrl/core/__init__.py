"""Qt-free engine of napari-colorrl: numpy/torch only, usable on a headless node.

Reading order:

1. ``config``: the one table of settings (defaults, ranges, help); ``config_files`` (reading,
   upgrading and merging config dictionaries), ``recipes`` (recipes and presets).
2. The method (``method/``): ``coloring`` (T binary steps, Algorithm 1), ``targets`` (interiors,
   rings, neighbours of each object), ``rewards`` (the dense per-pixel rewards), ``steps``
   (N_b and the number of steps T), ``postprocess`` (connected components per color).
3. The networks (``model/``): ``networks`` (the policy/value U-Net), ``fast_layers``,
   ``checkpoint`` (save, load and check model files), ``bundled`` (models shipped inside);
   bioimage.io packages: ``coloring_network`` (the network and its T argmax steps as one
   torch-only module), ``bioimage`` (reading a package safely), ``bioimage_export`` and
   ``bioimage_rdf`` (writing one with bioimageio.spec).
4. Training (``training/``): ``environment`` (batches of augmented episodes), ``rollout`` (one
   actor-critic update: play, loss, step), ``trainer`` (the generator of reports), ``state``
   (save and resume), ``stopping`` (Ctrl-C and SIGTERM end a run with its checkpoint),
   ``setup`` (from folders, layers and settings to a run: defaults, held-out validation,
   fine-tuning), ``selection`` (validation and the minimum size), ``distributed`` (torchrun
   workers).
5. Inference and scoring: ``inference`` (``Segmenter``: the image at the model's scale, in
   tiles), ``tiling`` (the tile grid, resampling a tile, stitching instances across tiles),
   ``metrics``.

Around them: ``data/`` (files, lazy arrays, input checks, normalisation, the training scale,
augmentation, synthetic samples),
``runtime`` (devices and memory checks) and ``demo`` (the demo's data and settings).
Submodules are imported on demand, so importing ``napari_colorrl.core`` does not import torch.
"""
