"""Data in and out: image and label files, input checks, normalisation, augmentation and
synthetic samples (numpy only)."""
