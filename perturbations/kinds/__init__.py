"""The built-in kinds: every module in this folder, imported here so that its `@register` runs. Adding a
kind is adding a module."""

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
