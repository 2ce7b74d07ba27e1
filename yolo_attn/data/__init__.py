"""Datasets, loading and augmentation."""
