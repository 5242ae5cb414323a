"""Gauntlet: attack-and-defend as a service."""

__version__ = "0.1.0"
