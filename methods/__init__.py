"""Floor 2: what to train. Backbones, pure loss functions, and one small class per method.

Every module here that defines a method is imported below so that its ``@register_method``
runs: adding a method is one new file, nothing edited here.
"""

from importlib import import_module
from pkgutil import iter_modules

from .base import FUSED, Batch, DataInfo, Method, MethodOptions
from .registry import METHODS, get_method, register_method, teacher_method

_SUPPORT = {"base", "registry", "backbones", "options"}
for _mod in iter_modules(__path__):
    if _mod.name not in _SUPPORT and not _mod.name.startswith("_"):
        import_module(f"{__name__}.{_mod.name}")

__all__ = ["FUSED", "METHODS", "Batch", "DataInfo", "Method", "MethodOptions", "get_method", "register_method",
           "teacher_method"]
