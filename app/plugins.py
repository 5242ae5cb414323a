"""Plugins: modules named in GAUNTLET_PLUGINS, imported by the API and the worker at startup.

Importing a module is all a plugin needs: an attack's spec class registers when it is defined, and its
engine class too, so both processes know an attack defined outside this package.
"""

import importlib

from app.settings import Settings


def plugin_modules(settings: Settings) -> list[str]:
    """The module names of the plugins setting, in order."""
    return [name.strip() for name in settings.plugins.split(",") if name.strip()]


def load_plugins(settings: Settings) -> list[str]:
    """Import every plugin module; a module that cannot be imported stops startup with its name."""
    names = plugin_modules(settings)
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise RuntimeError(
                f"GAUNTLET_PLUGINS names {name!r}, which cannot be imported: {error}"
            ) from error
    return names
