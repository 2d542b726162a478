"""Floor 1: the networks. A registry of architectures (encoders for C input channels that declare their
pooled width and their stages), beside the data sets and below the methods that build on them.

Every module here that registers architectures is imported below: adding one is one new file.
"""

from importlib import import_module
from pkgutil import iter_modules

from .base import POOL, STAGE_NAMES, Arch, Stage, forward_stages, stage_shapes
from .registry import ARCHS, DEFAULT_ARCH, TIMM_PREFIX, get_arch, register_arch

_SUPPORT = {"base", "registry", "choice", "cost", "weights", "timm_archs", "sequence"}
for _mod in iter_modules(__path__):
    if _mod.name not in _SUPPORT and not _mod.name.startswith("_"):
        import_module(f"{__name__}.{_mod.name}")

__all__ = ["ARCHS", "DEFAULT_ARCH", "POOL", "STAGE_NAMES", "TIMM_PREFIX", "Arch", "Stage", "forward_stages",
           "get_arch", "register_arch", "stage_shapes"]
