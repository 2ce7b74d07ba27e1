"""Detection heads, one module per family; every head declares its :class:`HeadContract` beside its class.
Every module in this package is imported here, so a new file registers its heads without any edit elsewhere."""

import importlib
import pkgutil

from yolo_attn.nn.heads.contract import (
    HeadContract,
    check_nms_free,
    configure_end_to_end,
    has_objectness,
    head_contract,
)

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["HeadContract", "check_nms_free", "configure_end_to_end", "has_objectness", "head_contract"]
