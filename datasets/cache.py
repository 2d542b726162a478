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

from cmkd.errors import UserError

from .base import MultiModalData, integer_labels, read_npy

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
    remove_stale_partials(out)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for m, arr in data.modalities.items():
            np.save(tmp / f"{m}.npy", arr)
        np.save(tmp / "labels.npy", data.labels)
        if data.published is not None:  # the data set's own split, and the recording of every row
            np.save(tmp / PUBLISHED_FILE, np.asarray(data.published, np.int8))
            if data.groups is not None:
                np.save(tmp / GROUPS_FILE, np.asarray(data.groups, np.int64))
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


CONTENT_FILE = "content.json"
PUBLISHED_FILE, GROUPS_FILE = "published_split.npy", "groups.npy"
REPREPARE = "run cmkd prepare again into a new folder"


def _file_stamp(root: Path, names: list[str]) -> dict[str, list[int]]:
    return {n: [(root / n).stat().st_size, (root / n).stat().st_mtime_ns] for n in names}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove what an interrupted ``cmkd prepare`` of ``out`` left (``.<name>.partial-<PID>`` of a dead PID)."""
    removed = []
    for p in out.parent.glob(f".{out.name}.partial-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def read_manifest(root: str | Path, expected_dataset: str | None = None) -> dict:
    """The cache's manifest (cheap: no arrays), checked for format and data set."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        for key in ("shapes", "dataset", "class_names", "rich"):
            manifest[key]
        if not isinstance(manifest["shapes"], dict):
            raise TypeError("shapes is not a table")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{root / MANIFEST} is unreadable or incomplete ({type(exc).__name__}: {exc}); {REPREPARE}") from None
    if manifest.get("format") != FORMAT:
        raise UserError(f"{root}: not a cmkd cache of format {FORMAT}; {REPREPARE}")
    if expected_dataset and manifest["dataset"] != expected_dataset:
        raise UserError(f"{root} is a prepared {manifest['dataset']!r} cache, not {expected_dataset!r}")
    return manifest


def read_cache(root: str | Path, expected_dataset: str | None = None, verify: bool = False) -> MultiModalData:
    root = Path(root)
    manifest = read_manifest(root, expected_dataset)
    shapes = manifest["shapes"]
    dataset, class_names, rich = manifest["dataset"], manifest["class_names"], manifest["rich"]
    mods = {}
    for m in shapes:
        path = root / f"{m}.npy"
        mods[m] = read_npy(path, REPREPARE, mmap=True)
        if list(mods[m].shape) != shapes[m]:
            raise UserError(f"{path}: shape {mods[m].shape} differs from the manifest's {shapes[m]}; {REPREPARE}")
    labels = integer_labels(read_npy(root / "labels.npy", REPREPARE), root / "labels.npy", REPREPARE)
    if verify and checksum(mods, labels) != manifest["checksum"]:
        raise UserError(f"{root}: checksum mismatch; the cache was modified, {REPREPARE}")
    # into memory: trials index random rows every step
    mods = {m: np.array(a) for m, a in mods.items()}
    extra = {}
    for key, name in (("published", PUBLISHED_FILE), ("groups", GROUPS_FILE)):
        if (root / name).is_file():
            extra[key] = np.asarray(read_npy(root / name, REPREPARE)).astype(np.int8 if key == "published" else np.int64)
    data = MultiModalData(name=dataset, modalities=mods, labels=labels, class_names=class_names, rich=rich,
                          meta={"manifest": manifest, "options": dict(manifest.get("options", {}))}, **extra)
    _content_hash_beside(root, data, manifest, [f"{m}.npy" for m in shapes] + ["labels.npy"])
    return data


def _content_hash_beside(root: Path, data: MultiModalData, manifest: dict, files: list[str]) -> None:
    """Hash the content once and keep the hash beside the cache, keyed by the manifest checksum and the
    files' sizes and modification times, so that a 5 GB data set is not rehashed by every trial."""
    key = {"manifest_checksum": manifest.get("checksum"), "files": _file_stamp(root, files)}
    try:
        stored = json.loads((root / CONTENT_FILE).read_text())
        if {k: stored.get(k) for k in key} == key:
            data.meta["content_hash"] = stored["content_hash"]
            return
    except (OSError, ValueError, KeyError, TypeError):
        pass
    key["content_hash"] = data.fingerprint()
    try:
        tmp = root / f".{CONTENT_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(key, indent=2))
        os.replace(tmp, root / CONTENT_FILE)
    except OSError:  # a read-only cache: hash again next time
        pass
