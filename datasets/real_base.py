"""What the three published data sets share: where their data may be, and the one normalisation.

``--root`` may hold (checked in this order) a cache made by ``cmkd prepare``, the official
DisCoM-KD arrays, or the raw published layout. Raw data are normalised per channel by the 2nd-98th
percentile rule; ``norm_stats`` says over which rows the percentiles are taken: ``all`` (default,
the official rule, which includes validation and test images: a mild leak, but what the paper did)
or ``train:R`` (the training rows of repetition R only).
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from cmkd.errors import UserError

from .base import MultiModalData
from .cache import is_cache, read_cache, read_manifest
from .official import has_official, read_official
from .preprocess import apply_stats, percentile_stats
from .registry import DatasetAdapter
from .splits import make_split


class RealDataset(DatasetAdapter):
    #: prefix of each modality in the official-code arrays
    official_prefixes: ClassVar[dict[str, str]] = {}

    def _official_map(self) -> dict[str, str]:
        wanted = self.modality_channels()
        return {p: m for p, m in self.official_prefixes.items() if m in wanted}

    def source(self) -> str:
        if is_cache(self.root):
            return "cache"
        if has_official(self.root, list(self._official_map())):
            return "official"
        return "raw"

    def found(self) -> bool:
        try:
            self.check()
            return True
        except UserError:
            return False

    def check(self) -> None:
        if self.root is None:
            raise UserError(f"data set {self.name!r} needs --root: its raw layout, official arrays, or a cache "
                            f"made by `cmkd prepare {self.name} --root RAW --out CACHE`")
        if not Path(self.root).is_dir():
            raise UserError(f"data root {self.root} does not exist; point --root at the {self.name} data "
                            f"(or prepare it: cmkd prepare {self.name} --root RAW --out CACHE)")
        ns = str(self.options.get("norm_stats", "all"))
        if not (ns == "all" or (ns.startswith("train:") and ns[6:].isdigit())):
            raise UserError(f"norm_stats must be 'all' or 'train:R' (R a repetition), got {ns!r}")
        if self.source() == "raw":
            self.check_raw()

    @abstractmethod
    def check_raw(self) -> None:
        """Find the raw layout (cheap: names only); raise naming what is missing."""

    @abstractmethod
    def read_raw(self) -> MultiModalData:
        """Every sample, un-normalised float32, modalities resized to one size."""

    def load(self) -> MultiModalData:
        self.check()
        src = self.source()
        if src == "cache":
            prepared = dict(read_manifest(self.root, self.name).get("options", {}))
            differ = {k: v for k, v in self.given.items() if prepared.get(k, self.default_options.get(k)) != v}
            if differ:
                k, v = next(iter(differ.items()))
                raise UserError(f"{self.root} is a cache prepared with {k}={prepared.get(k, self.default_options.get(k))!r}, "
                                f"not {k}={v!r}: a cache's options cannot change; drop --data-opt {k}, or prepare "
                                f"another cache with it (cmkd prepare {self.name} --data-opt {k}={v} ...)")
            data = read_cache(self.root, self.name)
            missing = set(self.modality_channels()) - set(data.modalities)
            if missing:
                raise UserError(f"{self.root}: the cache lacks modality {sorted(missing)}; prepare it with the same options")
            return data
        if src == "official":
            if self.given:
                k = next(iter(self.given))
                raise UserError(f"{self.root} holds official-code arrays, used as they are (already normalised and "
                                f"sized): option {k} cannot apply; drop --data-opt {k}")
            return read_official(self.root, self._official_map(), self.name, self.rich, list(self.class_names))
        data = self.normalize(self.read_raw())[0]
        data.meta["options"] = dict(self.options)
        return data

    def normalize(self, raw: MultiModalData) -> tuple[MultiModalData, dict]:
        ns = str(self.options.get("norm_stats", "all"))
        rows = None if ns == "all" else make_split(raw.labels, int(ns[6:])).train
        stats = {}
        for m, arr in raw.modalities.items():
            stats[m] = percentile_stats(arr, rows)
            raw.modalities[m] = apply_stats(arr, stats[m])
        raw.meta["normalisation"] = {"rule": "per-channel 2nd-98th percentile to [0, 1], clipped",
                                     "rows": ns, "stats": stats}
        return raw, raw.meta["normalisation"]

    def stack(self, per_sample: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
        return {m: np.stack(v).astype(np.float32) for m, v in per_sample.items()}
