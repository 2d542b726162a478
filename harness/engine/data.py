"""Loading a trial's data: the adapter, an in-process cache, and the split for a repetition."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cmkd.archs import DEFAULT_ARCH
from cmkd.datasets import MultiModalData, Split, get_dataset, make_split
from cmkd.errors import UserError
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
        data = adapter.load()
        data.check_values()  # NaN pixels or a single class: refused before any compute, once per process
        _CACHE[key] = data
    return _CACHE[key]


def default_root(name: str) -> str | None:
    """``$CMKD_DATA/<name>`` (default ``./data/<name>``) when it exists: where real data sets live."""
    path = Path(os.environ.get("CMKD_DATA", "data")) / name
    return str(path) if path.is_dir() else None


def data_info(data: MultiModalData, width: int = 64, arch: str = DEFAULT_ARCH, teacher_arch: str = DEFAULT_ARCH) -> DataInfo:
    """What a method may know of the data, and the networks it builds: the base width, the trial's
    architecture and its teacher's."""
    return DataInfo(
        name=data.name,
        channels=data.channels(),
        image_sizes={m: data.image_size(m) for m in data.modalities if data.image_size(m) is not None},
        n_classes=data.n_classes,
        rich=data.rich,
        width=width,
        arch=arch,
        teacher_arch=teacher_arch,
        kinds=dict(data.kinds),
        shapes={m: data.sample(m).shape for m in data.modalities},
    )


def spec_info(data: MultiModalData, spec) -> DataInfo:
    """:func:`data_info` for a trial spec: its width and its (and its teacher's) architectures."""
    return data_info(data, spec.train.width, spec.arch, spec.teacher_arch)


def split_for(data: MultiModalData, repetition: int, rule: str = "official", protocol: str = "paper") -> Split:
    """``paper``: the split shipped with official arrays for this repetition, else the split rule ``rule``
    (per-class 70/10/20). ``published``: the data set's own split (the same for every repetition)."""
    if protocol == "published":
        from cmkd.datasets.splits import published_split

        if data.published is None:
            from cmkd.datasets import DATASETS

            note = getattr(DATASETS.get(data.name), "published_split_note", "")
            raise UserError(f"data set {data.name!r} has no published train/test split here (split = \"published\" "
                            f"needs one){': ' + note if note else ''}; or use split = \"paper\" (--split paper)")
        return published_split(data.published, data.labels, repetition, data.groups)
    if data.splits and repetition in data.splits:
        return data.splits[repetition]  # type: ignore[return-value]
    if data.splits and data.meta.get("split_source"):  # a data set whose protocol is its own permutations
        raise UserError(f"data set {data.name!r} has {len(data.splits)} split(s) ({data.meta['split_source']}), none for "
                        f"repetition {repetition}; use seeds 0..{len(data.splits) - 1}")
    return make_split(data.labels, repetition, rule)
