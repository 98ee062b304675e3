"""``python -m napari_colorrl`` runs the command line (same as ``colorrl``)."""

from napari_colorrl.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
