"""Training losses, one module per family, each registered by name (:func:`register_loss`).
Every module in this package is imported here, so a new loss needs no edit elsewhere."""

import importlib
import pkgutil

from yolo_attn.losses.registry import Loss, build_loss, loss_names, register_loss

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["Loss", "build_loss", "loss_names", "register_loss"]
