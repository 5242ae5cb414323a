"""Poison detectors on the training set and at inference time (see registry.py)."""
