"""Corpus scans (``ufd-scan``): inputs, the scoring stages, the dataset, the engines."""
