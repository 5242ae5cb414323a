"""Modules the tests load through GAUNTLET_PLUGINS."""
