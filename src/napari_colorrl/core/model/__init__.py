"""The policy/value network, its CPU-fast layers, checkpoint files, the bundled models and
bioimage.io model packages."""
