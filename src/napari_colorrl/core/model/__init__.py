"""The policy/value network, its CPU-fast layers, checkpoint files and the bundled models."""
