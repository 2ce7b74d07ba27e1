"""The YOLO block families, one module per family. Every module in this package is imported here,
so a new file registers its blocks without any edit elsewhere."""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
