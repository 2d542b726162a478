"""MST-Distill's released data sets (Gray-OREO/MST-Distill, ACM MM 2025), read as its ``utils.py: get_data``
reads them, split as its ``get_indices`` splits them.

- ``avmnist``: ``avmnist/{image,audio}/{train,test}_data.npy`` and ``avmnist/{train,test}_labels.npy``; train
  and test concatenated (MST-Distill re-splits the 70,000 pairs), the image rows (784 values) as 1 x 28 x 28,
  the audio as a 1 x 112 x 112 spectrogram.
- ``ravdess``: ``RAVDESS_preprocessed_npy/{video,audio,label}_data.npy``; video N x 15 x 3 x 224 x 224 (frames
  of ``preprocess_RAVDESS_1.py``, BGR as OpenCV reads them), audio the 15 MFCCs x 156 frames of
  ``preprocess_RAVDESS_2.py``, read as a 1 x 15 x 156 spectrogram.
- ``crisismmd``: ``CMMD-V2/CMMD_data.pth``, a saved tuple (visual features N x 2048, text features N x 768,
  labels). Loaded with ``torch.load(weights_only=True)`` and only the numpy globals that plain arrays need:
  anything else is refused, never unpickled.

Normalisation (``normalize = "mst"``, the released code's): its ``min_max_normalize``, whose axes depend on the
rank of the array as stored: N x D and N x H x W per sample, N x C x H x W and N x T x C x H x W per channel
over the whole data set. CrisisMMD's features are used as stored (its call is commented out in the code).

Splits: repetition r is column ``group_r`` of ``metadata/<NAME>_indices.csv`` (one permutation of the rows per
repetition): its first ``int(0.6 N)`` rows train, the rows up to ``int(0.8 N)`` validate, the rest test. Without
the file (``indices`` option, or ``<root>/metadata/<NAME>_indices.csv``) the permutations are regenerated as
``indices_gen.py`` makes them (``np.random.seed(19980427)``, then one ``np.random.permutation(N)`` per group):
for CMMD-V2 (16,058 rows) and RAVDESS (1,440) these equal the published CSVs of commit 087db1c, all 20 groups.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cmkd.errors import UserError

from .base import MultiModalData, integer_labels, read_npy
from .cache import check_cache_options, is_cache, read_cache
from .registry import DatasetAdapter, register_dataset
from .splits import MST_GROUPS, MST_SEED, PermutationSplits, mst_split  # noqa: F401  (re-exported)

#: blocks of rows normalised at a time (bounded memory on 70,000-pair arrays)
BLOCK = 4096


# ---- normalisation -------------------------------------------------------------------------------------------
def _reduce_axes(ndim: int) -> tuple[tuple[int, ...], bool]:
    """(axes of the min and max, whether they run over the whole data set) for an array of rank ``ndim``,
    as MST-Distill's ``min_max_normalize`` takes them."""
    rules = {2: ((1,), False), 3: ((1, 2), False), 4: ((0, 2, 3), True), 5: ((0, 1, 3, 4), True)}
    if ndim not in rules:
        raise UserError(f"MST-Distill's normalisation takes arrays of rank 2 to 5, not {ndim}")
    return rules[ndim]


def mst_min_max(x: np.ndarray) -> np.ndarray:
    """``(x - min) / (max - min)`` over MST-Distill's axes for ``x``'s rank, in float64 as numpy computes it
    there, returned as float32 (what its ``torch.tensor(..., float32)`` keeps); by blocks of rows."""
    axes, global_ = _reduce_axes(x.ndim)
    out = np.empty(x.shape, np.float32)
    if global_:
        lo = np.min([np.asarray(x[s:s + BLOCK]).min(axis=axes, keepdims=True) for s in range(0, len(x), BLOCK)],
                    axis=0).astype(np.float64)
        hi = np.max([np.asarray(x[s:s + BLOCK]).max(axis=axes, keepdims=True) for s in range(0, len(x), BLOCK)],
                    axis=0).astype(np.float64)
    for s in range(0, len(x), BLOCK):
        block = np.asarray(x[s:s + BLOCK], dtype=np.float64)
        if not global_:
            lo, hi = block.min(axis=axes, keepdims=True), block.max(axis=axes, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):  # a constant sample gives NaN there too: refused later
            out[s:s + BLOCK] = (block - lo) / (hi - lo)
    return out


# ---- splits ----------------------------------------------------------------------------------------------------
def read_indices(path: Path, n: int) -> PermutationSplits:
    """An index CSV (``group_0, group_1, ...``: one permutation of the ``n`` rows per column), checked."""
    import pandas as pd

    fix = "pass MST-Distill's metadata/<NAME>_indices.csv for these files (or drop the indices option to regenerate it)"
    if not path.is_file():
        raise UserError(f"{path} is missing; {fix}")
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise UserError(f"{path} is not a readable CSV ({str(exc).splitlines()[0][:100]}); {fix}") from None
    names = [f"group_{i}" for i in range(table.shape[1])]
    if list(table.columns) != names or not len(names):
        raise UserError(f"{path}: columns must be group_0, group_1, ... in order, got {list(table.columns)[:4]}; {fix}")
    columns = []
    for name in names:
        col = table[name].to_numpy()
        if len(col) != n or not np.issubdtype(col.dtype, np.integer) or not np.array_equal(np.sort(col), np.arange(n)):
            raise UserError(f"{path}: column {name} is not a permutation of the data's {n} rows (it has {len(col)} "
                            f"values); its rows do not cover the data: {fix}")
        columns.append(col.astype(np.int64))
    return PermutationSplits(n, columns)


# ---- reading the released files --------------------------------------------------------------------------------
def load_pth_arrays(path: Path, fix: str) -> tuple[np.ndarray, ...]:
    """A ``torch.save``-d tuple of arrays (numpy arrays, tensors or lists of numbers), never unpickled: the
    weights-only loader, with only the numpy globals that plain numeric arrays need allowed."""
    import pickle

    import torch

    if not path.is_file():
        raise UserError(f"{path} is missing; {fix}")
    core = getattr(np, "_core", None) or np.core  # numpy 2 moved it; the pickle names whichever saved it
    allowed = [np.ndarray, np.dtype, core.multiarray._reconstruct]
    allowed += [type(np.dtype(t)) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "?")]
    try:
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        what = str(exc).split("Unsupported global:")[-1].split(".")[0:3] if "Unsupported global" in str(exc) else []
        raise UserError(f"{path} holds objects other than plain arrays ({'.'.join(what).strip() or 'not weights-only'}): "
                        f"refused, never unpickled; save a tuple of numeric arrays; {fix}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable torch file ({str(exc).splitlines()[0][:100]}); {fix}") from None
    if not isinstance(obj, (tuple, list)):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a tuple of arrays; {fix}")
    arrays = []
    for i, part in enumerate(obj):
        arr = part.numpy() if isinstance(part, torch.Tensor) else np.asarray(part)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
            raise UserError(f"{path}: item {i} holds {arr.dtype} values, not real numbers; {fix}")
        arrays.append(arr)
    return tuple(arrays)


class MSTDataset(DatasetAdapter):
    """A data set as MST-Distill releases it: arrays read whole, normalised as its code does, split by its
    per-repetition permutations."""

    #: MST-Distill's name for it (its index CSV is ``metadata/<mst_name>_indices.csv``)
    mst_name: ClassVar[str] = ""
    published_split_note = "it publishes per-repetition permutations instead (the default protocol reads them)"
    default_options: ClassVar[dict[str, Any]] = {"normalize": "mst", "indices": ""}

    def __init__(self, root: str | None = None, **options: Any) -> None:
        super().__init__(root, **options)
        if self.options["normalize"] not in ("mst", "none"):
            raise UserError(f"data set {self.name!r}: normalize must be 'mst' (the released code's) or 'none', "
                            f"got {self.options['normalize']!r}")

    def files(self) -> list[Path]:
        """The released files this adapter reads, under the root."""
        raise NotImplementedError

    def found(self) -> bool:
        return self.root is not None and (is_cache(self.root) or all(p.is_file() for p in self.files()))

    def check(self) -> None:
        if is_cache(self.root):
            return
        if self.root is None:
            raise UserError(f"data set {self.name!r} needs --root (the folder holding {self.files_text()}); or put it "
                            f"under $CMKD_DATA/{self.name}")
        missing = [p for p in self.files() if not p.is_file()]
        if missing:
            raise UserError(f"{missing[0]} is missing: {self.name} reads {self.files_text()} under --root")

    def files_text(self) -> str:
        return ", ".join(str(p.relative_to(Path(self.root or "."))) for p in self.files())

    def read(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The modalities (before normalisation, as the files hold them) and the labels."""
        raise NotImplementedError

    def shape(self, modality: str, arr: np.ndarray) -> np.ndarray:
        """A modality's array reshaped to this adapter's sample shape, after normalisation."""
        return arr

    def load(self) -> MultiModalData:
        self.check()
        if is_cache(self.root):  # made by cmkd prepare: normalised, memory-mapped in place, its permutations kept
            check_cache_options(self.root, self.name, self.given, self.default_options)
            return read_cache(self.root, self.name)
        arrays, labels = self.read()
        n = len(labels)
        for m, arr in arrays.items():
            if len(arr) != n:
                raise UserError(f"data set {self.name!r}: {m} has {len(arr)} rows but there are {n} labels; the files "
                                "must hold one row per sample, in the same order")
        if self.options["normalize"] == "mst" and self.normalised:
            arrays = {m: mst_min_max(a) for m, a in arrays.items()}
        mods = {m: self.shape(m, np.asarray(a, np.float32)) for m, a in arrays.items()}
        path = Path(self.options["indices"]) if self.options["indices"] else \
            Path(self.root) / "metadata" / f"{self.mst_name}_indices.csv"
        given = bool(self.options["indices"]) or path.is_file()
        splits = read_indices(path, n) if given else PermutationSplits(n)
        source = f"index CSV {path}" if given else f"regenerated as indices_gen.py (seed {MST_SEED})"
        return MultiModalData(name=self.name, modalities=mods, labels=labels, class_names=list(self.class_names),
                              rich=self.rich, splits=splits, kinds=dict(self.kinds),
                              meta={"source": f"MST-Distill files {self.root}", "split_source": source,
                                    "options": dict(self.options)})

    #: whether MST-Distill's code normalises this data set
    normalised: ClassVar[bool] = True

    def labels_from(self, path: Path) -> np.ndarray:
        fix = f"{self.name} needs one integer label per sample"
        return self.checked_labels(integer_labels(read_npy(path, fix), path, fix), path)

    def checked_labels(self, labels: np.ndarray, path: Path) -> np.ndarray:
        """``labels``, refused in one line unless each indexes one of the declared classes."""
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise UserError(f"{path}: labels must lie in 0..{len(self.class_names) - 1} ({len(self.class_names)} "
                            f"classes), found {labels.min()}..{labels.max()}")
        return labels


def _npy(path: Path, shape_tail: tuple[int, ...] | None, what: str) -> np.ndarray:
    arr = read_npy(path, f"{what} must be a numeric .npy array", mmap=True)
    if shape_tail is not None and tuple(arr.shape[1:]) != shape_tail:
        raise UserError(f"{path}: {what} must be N x {' x '.join(map(str, shape_tail))}, got shape {arr.shape}")
    return arr


@register_dataset("avmnist")
class AVMNIST(MSTDataset):
    description = "AV-MNIST as MST-Distill reads it: 28x28 digit images + 112x112 audio spectrograms, 10 classes"
    modalities = {"image": 1, "audio": 1}
    kinds = {"audio": "spectrogram"}
    rich = "image"  # MST-Distill's AV-MNIST teacher side (the image is the stronger modality)
    class_names = [str(d) for d in range(10)]
    mst_name = "AV-MNIST"
    label = "AV-MNIST"
    declared_samples = 70000  # 60,000 train + 10,000 test pairs, concatenated by get_av_mnist
    declared_sample_shapes = {"image": (1, 28, 28), "audio": (1, 112, 112)}

    def files(self) -> list[Path]:
        r = Path(self.root or ".") / "avmnist"
        return [r / "image" / "train_data.npy", r / "image" / "test_data.npy", r / "audio" / "train_data.npy",
                r / "audio" / "test_data.npy", r / "train_labels.npy", r / "test_labels.npy"]

    def read(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        f = self.files()
        image = [_npy(p, None, "AV-MNIST images (N x 784)") for p in f[0:2]]
        audio = [_npy(p, None, "AV-MNIST audio (N x 112 x 112)") for p in f[2:4]]
        for p, a, size in ((f[0], image[0], 784), (f[1], image[1], 784), (f[2], audio[0], 112 * 112),
                           (f[3], audio[1], 112 * 112)):
            if a.ndim < 2 or int(np.prod(a.shape[1:])) != size:
                raise UserError(f"{p}: each row must hold {size} values, got shape {a.shape}; "
                                "these are not AV-MNIST's released arrays")
        labels = np.concatenate([self.labels_from(f[4]), self.labels_from(f[5])])
        return {"image": np.concatenate(image), "audio": np.concatenate(audio)}, labels

    def shape(self, modality: str, arr: np.ndarray) -> np.ndarray:
        side = 28 if modality == "image" else 112
        return arr.reshape(-1, 1, side, side)


@register_dataset("ravdess")
class RAVDESS(MSTDataset):
    description = "RAVDESS speech as MST-Distill reads it: 15 face frames 224x224 + 15 MFCCs x 156, 8 emotions"
    modalities = {"video": 3, "audio": 1}
    kinds = {"audio": "spectrogram"}
    rich = "video"
    class_names = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    mst_name = "RAVDESS"
    label = "RAVDESS"
    declared_samples = 1440  # 24 actors x 60 speech clips; the rows of metadata/RAVDESS_indices.csv
    declared_sample_shapes = {"video": (15, 3, 224, 224), "audio": (1, 15, 156)}
    channel_names = {"video": ["blue", "green", "red"], "audio": ["mfcc"]}

    def files(self) -> list[Path]:
        r = Path(self.root or ".") / "RAVDESS_preprocessed_npy"
        return [r / "video_data.npy", r / "audio_data.npy", r / "label_data.npy"]

    def read(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        f = self.files()
        video = _npy(f[0], None, "RAVDESS video (N x T x C x H x W)")
        audio = _npy(f[1], None, "RAVDESS audio (N x MFCC x frames)")
        if video.ndim != 5:
            raise UserError(f"{f[0]}: RAVDESS video must be N x T x C x H x W, got shape {video.shape}")
        if audio.ndim != 3:
            raise UserError(f"{f[1]}: RAVDESS audio must be N x MFCC x frames, got shape {audio.shape}")
        return {"video": video, "audio": audio}, self.labels_from(f[2])

    def shape(self, modality: str, arr: np.ndarray) -> np.ndarray:
        return arr[:, None] if modality == "audio" else arr


@register_dataset("crisismmd")
class CrisisMMD(MSTDataset):
    description = "CrisisMMD-V2 as MST-Distill reads it: image features (2048) + text features (768), 8 classes"
    modalities = {"visual": 2048, "text": 768}
    rich = "visual"
    # MST-Distill's code names no classes; CMMD-V2's 8 are indices 0..7 of its preprocessing
    class_names = [f"class {i}" for i in range(8)]
    mst_name = "CMMD-V2"
    label = "CrisisMMD"
    declared_samples = 16058  # the rows of metadata/CMMD-V2_indices.csv (commit 087db1c)
    declared_sample_shapes = {"visual": (2048,), "text": (768,)}
    normalised = False  # get_cmmd_v2's min_max_normalize calls are commented out

    def files(self) -> list[Path]:
        return [Path(self.root or ".") / "CMMD-V2" / "CMMD_data.pth"]

    def read(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        path = self.files()[0]
        fix = "CMMD_data.pth must be a tuple (visual features N x D1, text features N x D2, labels N)"
        parts = load_pth_arrays(path, fix)
        if len(parts) != 3:
            raise UserError(f"{path} holds {len(parts)} item(s), not 3; {fix}")
        visual, text, labels = parts
        for what, arr in (("visual features", visual), ("text features", text)):
            if arr.ndim != 2:
                raise UserError(f"{path}: {what} must be N x D, got shape {arr.shape}; {fix}")
        return {"visual": visual, "text": text}, self.checked_labels(integer_labels(labels, path, fix), path)

    def modality_channels(self) -> dict[str, int]:
        return dict(self.modalities)
