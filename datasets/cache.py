"""The prepared cache: one ``.npy`` per modality (memory-mapped on load), labels, a manifest.

Written into a hidden temporary folder and renamed into place in one step, with the manifest
written last inside it: an interrupted ``cmkd prepare`` leaves no folder that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from cmkd.harness.errors import UserError

from .base import MultiModalData

MANIFEST = "manifest.json"
FORMAT = "cmkd-cache-1"


def is_cache(root: str | Path | None) -> bool:
    return root is not None and (Path(root) / MANIFEST).is_file()


def checksum(arrays: dict[str, np.ndarray], labels: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(labels).tobytes())
    for m in sorted(arrays):
        a = np.ascontiguousarray(arrays[m])
        h.update(m.encode())
        # a strided sample keeps the checksum fast on gigabytes while catching any rewrite
        h.update(a.reshape(-1)[:: max(1, a.size // 1_000_000)].tobytes())
    return h.hexdigest()


def write_cache(out: str | Path, data: MultiModalData, meta: dict[str, Any]) -> Path:
    out = Path(out)
    if out.exists():
        raise UserError(f"{out} exists; choose a new --out or remove it")
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for m, arr in data.modalities.items():
            np.save(tmp / f"{m}.npy", arr)
        np.save(tmp / "labels.npy", data.labels)
        counts = np.bincount(data.labels, minlength=data.n_classes)
        manifest = {
            "format": FORMAT, "dataset": data.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "rich": data.rich, "class_names": data.class_names,
            "counts_per_class": {c: int(n) for c, n in zip(data.class_names, counts)},
            "shapes": {m: list(a.shape) for m, a in data.modalities.items()}, "n": data.n,
            "checksum": checksum(data.modalities, data.labels), **meta,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_cache(root: str | Path, expected_dataset: str | None = None, verify: bool = False) -> MultiModalData:
    root = Path(root)
    manifest = json.loads((root / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise UserError(f"{root}: not a cmkd cache of format {FORMAT}; run cmkd prepare again")
    if expected_dataset and manifest["dataset"] != expected_dataset:
        raise UserError(f"{root} is a prepared {manifest['dataset']!r} cache, not {expected_dataset!r}")
    mods = {}
    for m in manifest["shapes"]:
        path = root / f"{m}.npy"
        if not path.is_file():
            raise UserError(f"{root}: {path.name} is missing from the cache; run cmkd prepare again")
        mods[m] = np.load(path, mmap_mode="r")
        if list(mods[m].shape) != manifest["shapes"][m]:
            raise UserError(f"{path}: shape {mods[m].shape} differs from the manifest's {manifest['shapes'][m]}")
    labels = np.load(root / "labels.npy")
    if verify and checksum(mods, labels) != manifest["checksum"]:
        raise UserError(f"{root}: checksum mismatch; the cache was modified, run cmkd prepare again")
    # into memory: trials index random rows every step
    mods = {m: np.array(a) for m, a in mods.items()}
    return MultiModalData(name=manifest["dataset"], modalities=mods, labels=labels,
                          class_names=manifest["class_names"], rich=manifest["rich"], meta={"manifest": manifest})
