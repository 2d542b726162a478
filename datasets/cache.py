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
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from cmkd.errors import UserError

from .base import ContentHasher, MultiModalData, check_finite, hash_splits, integer_labels, read_npy
from .npyfile import RowFile

MANIFEST = "manifest.json"
FORMAT = "cmkd-cache-1"


def is_cache(root: str | Path | None) -> bool:
    return root is not None and (Path(root) / MANIFEST).is_file()


class Checksum:
    """The manifest's checksum: SHA-256 of the labels and of a strided sample of each modality (every
    ``size // 1e6``-th value: fast on gigabytes, yet any rewrite of the files shows), fed by blocks of rows."""

    def __init__(self, labels: np.ndarray) -> None:
        self.h = hashlib.sha256(np.ascontiguousarray(labels).tobytes())
        self.step = self.pos = 0

    def begin(self, modality: str, size: int) -> None:
        self.h.update(modality.encode())
        self.step, self.pos = max(1, size // 1_000_000), 0

    def update(self, block: np.ndarray) -> None:
        flat = np.ascontiguousarray(block).reshape(-1)
        self.h.update(flat[(-self.pos) % self.step::self.step].tobytes())
        self.pos += flat.size

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def checksum(arrays: dict[str, np.ndarray], labels: np.ndarray) -> str:
    c = Checksum(labels)
    for m in sorted(arrays):
        c.begin(m, arrays[m].size)
        c.update(arrays[m])
    return c.hexdigest()


@contextmanager
def cache_folder(out: str | Path) -> Iterator[Path]:
    """A hidden ``.<name>.partial-<PID>`` folder to write a cache into, renamed to ``out`` in one step when the
    block ends (the manifest written last inside it); removed if it raises. What dead prepares of ``out`` left
    goes first."""
    out = Path(out)
    if out.exists():
        raise UserError(f"{out} exists; choose a new --out or remove it")
    remove_stale_partials(out)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if not (tmp / MANIFEST).is_file():
            raise RuntimeError(f"{tmp}: no manifest written")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def manifest_for(name: str, class_names: list[str], rich: str, labels: np.ndarray, shapes: dict[str, tuple[int, ...]],
                 check: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The one definition of a cache's manifest."""
    counts = np.bincount(labels, minlength=len(class_names))
    return {"format": FORMAT, "dataset": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "rich": rich,
            "class_names": list(class_names), "counts_per_class": {c: int(n) for c, n in zip(class_names, counts)},
            "shapes": {m: list(s) for m, s in shapes.items()}, "n": int(len(labels)), "checksum": check, **meta}


def write_small(tmp: Path, labels: np.ndarray, published: np.ndarray | None, groups: np.ndarray | None) -> None:
    """Labels, and the data set's own split and recordings where it publishes a split (groups only serve one)."""
    np.save(tmp / "labels.npy", np.asarray(labels, np.int64))
    if published is not None:
        np.save(tmp / PUBLISHED_FILE, np.asarray(published, np.int8))
        if groups is not None:
            np.save(tmp / GROUPS_FILE, np.asarray(groups, np.int64))


def write_manifest(tmp: Path, manifest: dict[str, Any]) -> None:
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))


def write_cache(out: str | Path, data: MultiModalData, meta: dict[str, Any]) -> Path:
    """A cache of arrays already in memory (``cmkd prepare`` streams its rows instead: :mod:`.build`)."""
    with cache_folder(out) as tmp:
        for m, arr in data.modalities.items():
            np.save(tmp / f"{m}.npy", arr)
        write_small(tmp, data.labels, data.published, data.groups)
        if data.splits and data.meta.get("split_source"):  # a data set's own per-repetition permutations
            orders = [np.concatenate([s.train, s.val, s.test]) for _, s in sorted(data.splits.items())]
            np.save(tmp / PERMUTATIONS_FILE, np.stack(orders).astype(np.int64))
            meta = {**meta, "split_source": data.meta["split_source"]}
        shapes = {m: a.shape for m, a in data.modalities.items()}
        kinds = {"kinds": data.declared_kinds()} if data.declared_kinds() else {}
        write_manifest(tmp, manifest_for(data.name, data.class_names, data.rich, data.labels, shapes,
                                         checksum(data.modalities, data.labels), {**meta, **kinds}))
    return Path(out)


CONTENT_FILE = "content.json"
PUBLISHED_FILE, GROUPS_FILE = "published_split.npy", "groups.npy"
#: a data set's own split permutations, one row per repetition (MST-Distill's index CSVs)
PERMUTATIONS_FILE = "permutations.npy"
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
    """The cache, its arrays memory-mapped in place (copy-on-write): a trial reads the rows it gathers, only of
    the modalities it uses, and every process on a machine shares one copy in the page cache. The content
    hash and the values check run once per cache, by blocks, and are kept beside it (:data:`CONTENT_FILE`);
    ``verify`` runs them again and compares the manifest's checksum."""
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
    extra = {}
    for key, name in (("published", PUBLISHED_FILE), ("groups", GROUPS_FILE)):
        if (root / name).is_file():
            extra[key] = np.asarray(read_npy(root / name, REPREPARE)).astype(np.int8 if key == "published" else np.int64)
    splits = None
    if (root / PERMUTATIONS_FILE).is_file():
        from .splits import PermutationSplits

        orders = np.asarray(read_npy(root / PERMUTATIONS_FILE, REPREPARE)).astype(np.int64)
        splits = PermutationSplits(len(labels), list(orders))
    meta = {"manifest": manifest, "options": dict(manifest.get("options", {}))}
    if splits is not None:
        meta["split_source"] = f"{manifest.get('split_source', 'shipped permutations')}, kept in the cache"
    data = MultiModalData(name=dataset, modalities=mods, labels=labels, class_names=class_names, rich=rich,
                          meta=meta, kinds=dict(manifest.get("kinds", {})), splits=splits, **extra)
    content = None if verify else read_content(root, manifest)
    if content is None:
        content_hash, check = scan_cache(root, manifest, labels, splits)
        if verify and check != manifest.get("checksum"):
            raise UserError(f"{root}: checksum mismatch; the cache was modified, {REPREPARE}")
        content = write_content(root, manifest, content_hash)
    data.meta["content_hash"] = content["content_hash"]
    data.meta["values_checked"] = True
    return data


def check_cache_options(root: str | Path, name: str, given: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Refuse, in one line, options that differ from those the cache at ``root`` was prepared with."""
    prepared = dict(read_manifest(root, name).get("options", {}))
    differ = {k: v for k, v in given.items() if prepared.get(k, defaults.get(k)) != v}
    if differ:
        k, v = next(iter(differ.items()))
        raise UserError(f"{root} is a cache prepared with {k}={prepared.get(k, defaults.get(k))!r}, "
                        f"not {k}={v!r}: a cache's options cannot change; drop --data-opt {k}, or prepare "
                        f"another cache with it (cmkd prepare {name} --data-opt {k}={v} ...)")


def cache_files(manifest: dict) -> list[str]:
    return [f"{m}.npy" for m in manifest["shapes"]] + ["labels.npy"]


def scan_cache(root: Path, manifest: dict, labels: np.ndarray, splits=None) -> tuple[str, str]:
    """(content hash, checksum) of a cache's files, read a block of rows at a time; every value checked finite.
    ``splits``: shipped splits, hashed as :func:`content_hash` hashes them (the cache hashes as its source)."""
    hasher, check = ContentHasher(manifest["class_names"], manifest["rich"], labels, manifest.get("kinds")), Checksum(labels)
    for m in sorted(manifest["shapes"]):
        with RowFile(root / f"{m}.npy") as f:
            hasher.begin(m, f.dtype, f.shape)
            check.begin(m, int(np.prod(f.shape, dtype=np.int64)))
            for start, block in f.blocks():
                check_finite(manifest["dataset"], m, start, block)
                hasher.update(block)
                check.update(block)
    hash_splits(hasher, splits)
    return hasher.hexdigest(), check.hexdigest()


def read_content(root: Path, manifest: dict) -> dict | None:
    """The content record kept beside the cache, if it still describes these files (same manifest checksum,
    sizes and modification times); else None."""
    try:
        stored = json.loads((root / CONTENT_FILE).read_text())
        key = {"manifest_checksum": manifest.get("checksum"), "files": _file_stamp(root, cache_files(manifest))}
        if {k: stored.get(k) for k in key} == key and isinstance(stored.get("content_hash"), str):
            return stored
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def write_content(root: Path, manifest: dict, content_hash: str) -> dict:
    """Keep the content hash beside the cache (and that every value was checked), keyed by the manifest checksum
    and the files' sizes and modification times, so that a 6 GB cache is not rehashed by every trial."""
    record = {"manifest_checksum": manifest.get("checksum"), "files": _file_stamp(root, cache_files(manifest)),
              "content_hash": content_hash, "values_checked": True}
    try:
        tmp = root / f".{CONTENT_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, root / CONTENT_FILE)
    except OSError:  # a read-only cache: hash again next time
        pass
    return record
