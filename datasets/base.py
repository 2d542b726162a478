"""The one in-memory form every data-set adapter produces."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmkd.errors import UserError

from .kinds import SampleShape, check_kind, infer_kind


@dataclass
class MultiModalData:
    """Aligned per-modality arrays: row i of every modality is the same scene.

    ``modalities`` maps a modality name to a float32 array N x (one sample): an image N x C x H x W (sizes may
    differ between modalities), a vector N x D, or a sequence N x T x C x H x W / N x T x D. ``kinds`` names
    what each is (:mod:`cmkd.datasets.kinds`); a modality it omits has the kind its rank implies. ``rich``
    names the modality of the cross-modal teacher (the most informative one).
    """

    name: str
    modalities: dict[str, np.ndarray]
    labels: np.ndarray
    class_names: list[str]
    rich: str
    splits: dict[int, "object"] | None = None  # optional pre-made splits (official-code arrays)
    meta: dict = field(default_factory=dict)
    #: the split the data set itself publishes, per row: 0 train, 1 validation, 2 test, -1 not listed
    #: (``split = "published"``); None where it publishes none
    published: np.ndarray | None = None
    #: per row, the recording (shot, scene...) it comes from: rows of one group are near-duplicates
    groups: np.ndarray | None = None
    #: per modality, its kind (image, spectrogram, vector, sequence); filled from the ranks where not declared
    kinds: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.labels)
        if not self.modalities:
            raise UserError(f"data set {self.name!r} has no modality")
        unknown = sorted(set(self.kinds) - set(self.modalities))
        if unknown:
            raise UserError(f"data set {self.name!r}: kinds name modality {unknown[0]!r}, which it lacks")
        for m, arr in self.modalities.items():
            kind = self.kinds.get(m) or infer_kind(arr.ndim)
            if kind is None:
                raise UserError(f"data set {self.name!r}, modality {m!r}: shape {arr.shape} is none of N x C x H x W "
                                "(images), N x D (vectors), N x T x C x H x W or N x T x D (sequences)")
            check_kind(self.name, m, kind, arr.shape)
            self.kinds[m] = kind
            if min(arr.shape[1:]) < 1:
                raise UserError(f"data set {self.name!r}, modality {m!r}: shape {arr.shape} has no channel or no pixel (an "
                                "empty axis); every sample needs at least one value on each axis")
            if arr.shape[0] != n:
                raise UserError(
                    f"data set {self.name!r}, modality {m!r}: {arr.shape[0]} rows but {n} labels; "
                    "every modality needs one row per label"
                )
            if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
                raise UserError(f"data set {self.name!r}, modality {m!r}: values of type {arr.dtype} (not real "
                                "numbers); store real-valued arrays (e.g. the magnitude of complex SAR data)")
            if arr.dtype != np.float32:
                self.modalities[m] = arr.astype(np.float32)
        if self.rich not in self.modalities:
            raise UserError(f"data set {self.name!r}: rich modality {self.rich!r} is not among {list(self.modalities)}")
        for what in ("published", "groups"):
            arr = getattr(self, what)
            if arr is not None and len(arr) != n:
                raise UserError(f"data set {self.name!r}: {what} has {len(arr)} rows but there are {n} labels")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise UserError(f"data set {self.name!r}: labels must lie in 0..{len(self.class_names) - 1}")

    def check_values(self, rows: int = 4096) -> None:
        """One pass over the content before any compute: every value finite, and at least two classes
        present (one class makes every F1 100). Row blocks keep the memory bounded on memory-mapped data."""
        present = np.unique(self.labels)
        checked = self.meta.get("values_checked", False)
        if len(present) < 2:
            raise UserError(f"data set {self.name!r}: its {self.n} labels hold {len(present)} class(es) "
                            f"({', '.join(self.class_names[int(c)] for c in present) or 'none'}); classification needs "
                            "two at least")
        for m, arr in ({} if checked else self.modalities).items():  # a cache's files were checked once, beside it
            for start in range(0, len(arr), rows):
                check_finite(self.name, m, start, np.asarray(arr[start:start + rows]))

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def sample(self, modality: str) -> SampleShape:
        """One sample of ``modality``: its kind and shape."""
        return SampleShape(self.kinds[modality], tuple(int(s) for s in self.modalities[modality].shape[1:]))

    def channels(self) -> dict[str, int]:
        """C of each image modality (of a sequence's frames), D of each vector modality."""
        return {m: self.sample(m).channels for m in self.modalities}

    def image_size(self, modality: str) -> tuple[int, int] | None:
        """H x W of an image modality (of a sequence's frames); None for vectors."""
        return self.sample(modality).image_size

    def declared_kinds(self) -> dict[str, str]:
        """The kinds that differ from what the ranks imply (a spectrogram): what the content hash adds."""
        return {m: k for m, k in sorted(self.kinds.items()) if k != infer_kind(self.modalities[m].ndim)}

    def fingerprint(self) -> str:
        """A hash of the content trained on: every array's bytes, labels, class names, the rich modality
        and any shipped split. Computed once per object (or read from ``meta["content_hash"]``, which a
        prepared cache keeps beside its manifest), so a trial's identity follows the data, not its path."""
        if "content_hash" not in self.meta:
            self.meta["content_hash"] = content_hash(self)
        return self.meta["content_hash"]


def check_finite(dataset: str, modality: str, start: int, block: np.ndarray) -> None:
    """Refuse, in one line naming the first bad row, a block of rows (from row ``start``) holding NaN or inf."""
    finite = np.isfinite(block)
    if not finite.all():
        bad = int(np.argwhere(~finite.reshape(len(block), -1).all(axis=1))[0][0])
        raise UserError(f"data set {dataset!r}, modality {modality!r}: {int((~finite).sum())} value(s) NaN or infinite "
                        f"in the rows from {start + bad} on; fix those rows in the files (or drop them)")


class ContentHasher:
    """The content hash of :meth:`MultiModalData.fingerprint`, fed array by array or block by block, so that
    a cache on disk hashes to what its arrays in memory hash to without being held in memory."""

    def __init__(self, class_names: list[str], rich: str, labels: np.ndarray, kinds: dict[str, str] | None = None) -> None:
        self.h = hashlib.blake2b(digest_size=16)
        head = {"classes": list(class_names), "rich": rich}
        if kinds:  # declared kinds only: every data set from before kinds keeps its hash
            head["kinds"] = dict(sorted(kinds.items()))
        self.h.update(json.dumps(head).encode())
        self.array(np.asarray(labels))

    def begin(self, name: str | None, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        """Start an array (``name``: a modality's, hashed before it; then its dtype and shape); its bytes follow."""
        if name is not None:
            self.h.update(name.encode())
        self.h.update(f"{np.dtype(dtype).str}{tuple(shape)}".encode())

    def update(self, block: np.ndarray, chunk: int = 64 * 2**20) -> None:
        flat = np.ascontiguousarray(block).reshape(-1).view(np.uint8)
        for start in range(0, flat.size, chunk):
            self.h.update(memoryview(flat[start:start + chunk]))

    def array(self, arr: np.ndarray, name: str | None = None) -> None:
        self.begin(name, arr.dtype, arr.shape)
        self.update(arr)

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def content_hash(data: MultiModalData) -> str:
    hasher = ContentHasher(data.class_names, data.rich, data.labels, data.declared_kinds())
    for m in sorted(data.modalities):
        hasher.array(data.modalities[m], m)
    hash_splits(hasher, data.splits)
    return hasher.hexdigest()


def hash_splits(hasher: ContentHasher, splits) -> None:
    """Shipped splits (official index files, published permutations) join the content hash, in repetition order."""
    for r, split in sorted((splits or {}).items()):
        hasher.h.update(f"split{r}".encode())
        for part in (split.train, split.val, split.test):  # type: ignore[attr-defined]
            hasher.array(np.asarray(part, dtype=np.int64))


def read_npy(path: Path, fix: str, mmap: bool = False, numeric: bool = True) -> np.ndarray:
    """An ``.npy`` array, or a one-line :class:`UserError` naming the file, what is wrong and ``fix``
    (a truncated, corrupt or pickled file; a text or object dtype where numbers belong)."""
    if not path.is_file():
        raise UserError(f"{path} is missing; {fix}")
    try:
        # copy-on-write: torch takes the map as it is (a read-only one it warns about), and pages stay shared
        arr = np.load(path, mmap_mode="c" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        if "allow_pickle" in str(exc) or "Python objects" in str(exc):  # an object array: never unpickled
            raise UserError(f"{path} is not a readable .npy array: it holds Python objects, not numbers (samples of "
                            f"varying length, such as "
                            f"clips of different frame counts, are saved so): refused, never unpickled; pad or cut "
                            f"every sample to one length; {fix}") from None
        raise UserError(f"{path} is not a readable .npy array ({str(exc).splitlines()[0][:120]}): the file is "
                        f"truncated or corrupt; {fix}") from None
    if numeric and not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise UserError(f"{path} holds {arr.dtype} values, not numbers; {fix}")
    if np.iscomplexobj(arr):
        raise UserError(f"{path} holds complex values ({arr.dtype}), not real numbers: store the magnitude (or the "
                        f"real and imaginary parts as channels); {fix}")
    return arr


def integer_labels(labels: np.ndarray, path: Path, fix: str) -> np.ndarray:
    """Labels as int64; float labels must be whole numbers (as an official labels.npy may store them)."""
    labels = np.asarray(labels)
    if labels.ndim > 1 and int(np.prod(labels.shape[1:])) != 1:
        raise UserError(f"{path}: labels must be one per sample (shape N), got shape {labels.shape}; {fix}")
    flat = labels.reshape(-1)
    if not np.issubdtype(flat.dtype, np.integer):
        if not np.all(np.isfinite(flat)) or not np.all(flat == np.round(flat)):
            raise UserError(f"{path}: labels must be whole numbers; {fix}")
    return flat.astype(np.int64)
