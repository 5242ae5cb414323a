"""Poisoning attacks, one class per enumerated name (see registry.py)."""
