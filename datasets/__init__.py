"""Floor 1: data-set adapters into one in-memory form, and the split rule.

Every module of this package that defines an adapter is imported here, so that its
``@register_dataset`` runs: adding a data set is one new file, nothing edited here.
"""

from importlib import import_module
from pkgutil import iter_modules

from .base import MultiModalData
from .registry import DATASETS, DatasetAdapter, get_dataset, register_dataset
from .splits import Split, make_split

_SUPPORT = {"base", "registry", "splits", "cache", "preprocess", "real_base", "rows", "npyfile", "build"}
for _mod in iter_modules(__path__):
    if _mod.name not in _SUPPORT and not _mod.name.startswith("_"):
        import_module(f"{__name__}.{_mod.name}")

__all__ = ["DATASETS", "DatasetAdapter", "MultiModalData", "Split", "get_dataset", "make_split", "register_dataset"]
