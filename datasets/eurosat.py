"""EuroSat-MS-SAR (Wang et al. 2023): Sentinel-2 MS (13 bands) + Sentinel-1 SAR (VV, VH), 10 classes.

Reads the two published GeoTIFF trees under ``--root``: the MS tree, deep
(``.../sentinel_2/tif/<Class>/<Class>_<i>.tif``, the unzipped EuroSATallBands) or flat
(``EuroSAT-MS/<Class>/``), and the SAR tree (``EuroSAT-SAR/<Class>/<Class>_<i>.tif``); ``ms_dir`` and
``sar_dir`` name them explicitly. Files are paired by (class, file name), never by listing order;
bands stay in file order (B8A last); labels are the classes in alphabetical order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmkd.errors import UserError

from .preprocess import resize
from .real_base import RawListing, RawSample, RealDataset
from .registry import register_dataset

CLASSES = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake"]
MS_CANDIDATES = ("EuroSAT-MS", "EuroSAT_MS", "EuroSATallBands", "MS")
SAR_CANDIDATES = ("EuroSAT-SAR", "EuroSAT_SAR", "SAR")


@register_dataset("eurosat-ms-sar")
class EuroSatMSSAR(RealDataset):
    label = "EuroSat-MS-SAR"
    paper_column = 2
    description = "EuroSat-MS-SAR: Sentinel-2 multi-spectral (13 bands) + Sentinel-1 SAR (VV, VH), 10 land-cover classes"
    modalities = {"ms": 13, "sar": 2}
    rich = "ms"
    class_names = CLASSES
    declared_samples = 27000  # pairs (Wang et al. 2023)
    declared_image_size = 64
    channel_names = {"ms": ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12", "B8A"],
                     "sar": ["VV", "VH"]}
    official_prefixes = {"MS": "ms", "SAR": "sar"}
    published_split_note = ("EuroSAT publishes no official split (the split files of later benchmarks are not "
                            "the paper's protocol)")
    default_options = {"ms_dir": "", "sar_dir": "", "image_size": 0, "norm_stats": "all"}

    # ---- layout ------------------------------------------------------------------------------
    def _ms_dir(self) -> Path:
        root = Path(self.root)
        if self.options["ms_dir"]:
            return root / self.options["ms_dir"]
        deep = sorted(root.glob("**/sentinel_2/tif"))
        if deep:
            return deep[0]
        for name in MS_CANDIDATES:
            if (root / name).is_dir():
                return root / name
        raise UserError(f"{root}: no EuroSAT MS tree found (looked for **/sentinel_2/tif/<Class>/ and "
                        f"{', '.join(MS_CANDIDATES)}/<Class>/); pass --data-opt ms_dir=PATH")

    def _sar_dir(self) -> Path:
        root = Path(self.root)
        if self.options["sar_dir"]:
            return root / self.options["sar_dir"]
        for name in SAR_CANDIDATES:
            if (root / name).is_dir():
                return root / name
        raise UserError(f"{root}: no EuroSAT-SAR tree found (looked for {', '.join(SAR_CANDIDATES)}/<Class>/); "
                        "pass --data-opt sar_dir=PATH")

    @staticmethod
    def _index(tree: Path, what: str) -> dict[tuple[str, str], Path]:
        if not tree.is_dir():
            raise UserError(f"{tree}: the {what} folder does not exist")
        files: dict[tuple[str, str], Path] = {}
        for cls_dir in sorted(p for p in tree.iterdir() if p.is_dir()):
            if cls_dir.name not in CLASSES:
                raise UserError(f"{cls_dir}: unknown class folder {cls_dir.name!r} in the {what} tree; "
                                f"expected one of {', '.join(CLASSES)}")
            for f in cls_dir.iterdir():
                if f.suffix.lower() in (".tif", ".tiff"):
                    files[(cls_dir.name, f.stem)] = f
        if not files:
            raise UserError(f"{tree}: no .tif files under <Class>/ folders in the {what} tree")
        return files

    def pairs(self) -> list[tuple[str, Path, Path]]:
        ms, sar = self._index(self._ms_dir(), "MS"), self._index(self._sar_dir(), "SAR")
        only_ms, only_sar = sorted(set(ms) - set(sar)), sorted(set(sar) - set(ms))
        if only_ms or only_sar:
            show = lambda keys: ", ".join(f"{c}/{n}.tif" for c, n in keys[:5]) + (" ..." if len(keys) > 5 else "")  # noqa: E731
            raise UserError(f"unpaired EuroSAT files: {len(only_ms)} MS without SAR ({show(only_ms)}), "
                            f"{len(only_sar)} SAR without MS ({show(only_sar)})")
        return [(c, ms[(c, n)], sar[(c, n)]) for c, n in sorted(ms)]

    def check_raw(self) -> None:
        self.pairs()

    # ---- reading -----------------------------------------------------------------------------
    @staticmethod
    def _read_tif(path: Path, bands: int) -> np.ndarray:
        import tifffile

        try:
            arr = tifffile.imread(path)
        except Exception as exc:  # tifffile raises several types on corrupt files
            raise UserError(f"{path}: cannot read the GeoTIFF ({type(exc).__name__}: {exc}); corrupt or truncated") from None
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise UserError(f"{path}: expected H x W x {bands} bands, got shape {arr.shape}")
        if arr.shape[-1] != bands and arr.shape[0] == bands:  # planar files
            arr = arr.transpose(1, 2, 0)
        if arr.shape[-1] != bands:
            raise UserError(f"{path}: expected {bands} bands, got {arr.shape[-1]}")
        return arr.transpose(2, 0, 1).astype(np.float32)

    def listing(self) -> RawListing:
        return RawListing([RawSample(CLASSES.index(c), {"ms": ms, "sar": sar}) for c, ms, sar in self.pairs()])

    def decode(self, sample: RawSample) -> dict[str, np.ndarray]:
        size = int(self.options["image_size"]) or None
        ms, sar = self._read_tif(sample.files["ms"], 13), self._read_tif(sample.files["sar"], 2)
        if size is None and ms.shape[1:] != sar.shape[1:]:
            raise UserError(f"{sample.files['sar']}: {sar.shape[1:]} pixels, its MS pair {ms.shape[1:]}; "
                            "pass --data-opt image_size=N to resize both")
        return {"ms": resize(ms, size), "sar": resize(sar, size)}
