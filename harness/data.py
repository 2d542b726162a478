"""Loading a trial's data: the adapter, an in-process cache, and the split for a repetition."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cmkd.datasets import MultiModalData, Split, get_dataset, make_split
from cmkd.methods import DataInfo

_CACHE: dict[str, MultiModalData] = {}


def load_data(name: str, root: str | None, options: dict[str, Any]) -> MultiModalData:
    """The data set's arrays, loaded once per process (several trials of a Ray worker share them)."""
    if root is None:
        root = default_root(name)
    key = json.dumps([name, root, options], sort_keys=True, default=str)
    if key not in _CACHE:
        adapter = get_dataset(name, root=root, **options)
        adapter.check()
        if len(_CACHE) >= 2:  # keep memory bounded on workers that see several data sets
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = adapter.load()
    return _CACHE[key]


def default_root(name: str) -> str | None:
    """``$CMKD_DATA/<name>`` (default ``./data/<name>``) when it exists: where real data sets live."""
    path = Path(os.environ.get("CMKD_DATA", "data")) / name
    return str(path) if path.is_dir() else None


def data_info(data: MultiModalData) -> DataInfo:
    return DataInfo(
        name=data.name,
        channels=data.channels(),
        image_sizes={m: data.image_size(m) for m in data.modalities},
        n_classes=data.n_classes,
        rich=data.rich,
    )


def split_for(data: MultiModalData, repetition: int, rule: str = "official") -> Split:
    """The data set's own split for this repetition when it ships one, else the split rule ``rule``."""
    if data.splits and repetition in data.splits:
        return data.splits[repetition]  # type: ignore[return-value]
    return make_split(data.labels, repetition, rule)
