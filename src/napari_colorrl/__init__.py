"""napari-colorrl: ColorRL (reinforced coloring) instance segmentation for napari.

Importing this package is cheap: torch, Qt and napari are imported only where they are used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
