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
from .cache import check_cache_options, is_cache, read_cache
from .official import has_official, read_official
from .preprocess import apply_stats, percentile_stats
from .rows import RawListing, RawSample, decode_rows
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
    def listing(self) -> RawListing:
        """Every sample of the raw layout, in row order (cheap: names and list files only)."""

    @abstractmethod
    def decode(self, sample: RawSample) -> dict[str, np.ndarray]:
        """One sample's images as float32 C x H x W per modality, un-normalised, resized to one size. Runs in
        worker processes: it reads only the adapter's options and the sample."""

    def read_raw(self) -> MultiModalData:
        """Every sample, un-normalised float32, in arrays allocated once (rows written in place)."""
        listing = self.listing()
        arrays: dict[str, np.ndarray] = {}
        for i, rows in decode_rows(self, listing.samples, f"{self.name} samples"):
            if not arrays:
                arrays = {m: np.empty((len(listing.samples), *a.shape), np.float32) for m, a in rows.items()}
            for m, a in rows.items():
                arrays[m][i] = a
        return MultiModalData(name=self.name, modalities=arrays, labels=listing.labels(), class_names=list(self.class_names),
                              rich=self.rich, meta={"source": f"raw {self.root}", **listing.meta},
                              published=listing.parts(), groups=listing.groups())

    def load(self) -> MultiModalData:
        self.check()
        src = self.source()
        if src == "cache":
            check_cache_options(self.root, self.name, self.given, self.default_options)
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
            apply_stats(arr, stats[m], out=arr)  # in place: no second copy of the data set
        raw.meta["normalisation"] = {"rule": "per-channel 2nd-98th percentile to [0, 1], clipped",
                                     "rows": ns, "stats": stats}
        return raw, raw.meta["normalisation"]

    def same_size(self, rows: dict[str, np.ndarray], where: Path) -> dict[str, np.ndarray]:
        """``rows`` when every modality has one size; else the one-line refusal naming the file and the fix."""
        sizes = {m: a.shape[1:] for m, a in rows.items()}
        if len(set(sizes.values())) > 1:
            raise UserError(f"{where}: the modalities differ in size ({', '.join(f'{m} {s}' for m, s in sizes.items())}); "
                            "pass --data-opt image_size=N to resize them to one")
        return rows
