"""SUNRGBD, Kinect v2 domain (Ferreri et al. 2021): RGB (3) + depth (1), 10 indoor scene classes.

Reads the sample list ``kv2.txt`` (``kv2/<class>/<id>.png <label>``) and ``mapping.txt``
(``<id>.png -> /SUNRGBD/<sensor>/.../<sample folder>``) against a SUN RGB-D root (the folder that
holds ``SUNRGBD/``, or ``SUNRGBD/`` itself); the list files are looked for in the root and in
``subsets/``. RGB from ``image/*.jpg``; depth from ``depth_bfx/`` by default (holes filled: the
folder the SUN RGB-D toolbox's ``read3dPoints`` reads; ``depth_dir=depth`` for the raw sensor
depth), a 16-bit PNG whose value is rotated right by 3 bits to give millimetres, 0 = missing,
capped at 8 m as the toolbox does. Both modalities are resized to ``image_size`` (default 224:
square so that 90-degree rotations keep the shape, and the crop size of Ferreri et al.; the size
DisCoM-KD used is not published).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmkd.errors import UserError

from .preprocess import read_png, read_rgb, resize
from .real_base import RawListing, RawSample, RealDataset
from .registry import register_dataset

CLASSES = ["bathroom", "bedroom", "classroom", "computer_room", "conference_room", "dining_area",
           "discussion_area", "kitchen", "office", "rest_space"]
MAX_DEPTH_MM = 8000.0


def decode_depth(raw: np.ndarray) -> np.ndarray:
    """SUN RGB-D depth PNG -> millimetres: rotate the 16-bit value right by 3 bits."""
    v = raw.astype(np.uint16)
    mm = ((v >> 3) | (v << 13)).astype(np.uint16).astype(np.float32)
    return np.minimum(mm, MAX_DEPTH_MM)


def encode_depth(mm: np.ndarray) -> np.ndarray:
    """The inverse (for writing test fixtures): rotate left by 3 bits."""
    v = mm.astype(np.uint16)
    return ((v << 3) | (v >> 13)).astype(np.uint16)


@register_dataset("sunrgbd")
class SUNRGBD(RealDataset):
    label = "SUNRGBD"
    paper_column = 1
    description = "SUN RGB-D, Kinect v2 domain: RGB (3) + depth (1, mm), 10 scene classes (2,105 pairs)"
    modalities = {"rgb": 3, "depth": 1}
    rich = "rgb"
    class_names = CLASSES
    declared_samples = 2105  # Kinect v2 pairs (Ferreri et al. 2021; the paper's count)
    declared_image_size = 224
    channel_names = {"rgb": ["R", "G", "B"], "depth": ["depth (mm, holes filled)"]}
    official_prefixes = {"RGB": "rgb", "DEPTH": "depth"}
    default_options = {"list_file": "", "mapping_file": "", "depth_dir": "depth_bfx", "image_size": 224,
                       "norm_stats": "all", "split_file": ""}
    published_split_note = ("SUN RGB-D's official train/test split comes from the toolbox's "
                            "SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat: put it in the root (or subsets/) or pass "
                            "--data-opt split_file=PATH when preparing the data")

    def _find(self, option: str, name: str) -> Path:
        root = Path(self.root)
        if self.options[option]:
            p = Path(self.options[option])
            return p if p.is_absolute() else root / p
        for cand in (root / name, root / "subsets" / name, root.parent / "subsets" / name):
            if cand.is_file():
                return cand
        raise UserError(f"{root}: {name} not found (looked in the root and subsets/); pass --data-opt {option}=PATH")

    def samples(self) -> list[tuple[int, Path]]:
        if self.options["depth_dir"] not in ("depth", "depth_bfx"):
            raise UserError(f"depth_dir must be depth or depth_bfx, got {self.options['depth_dir']!r}")
        list_file, mapping_file = self._find("list_file", "kv2.txt"), self._find("mapping_file", "mapping.txt")
        mapping: dict[str, str] = {}
        for line in mapping_file.read_text().splitlines()[1:]:
            if "->" in line:
                key, target = (s.strip() for s in line.split("->", 1))
                mapping[key] = target
        root = Path(self.root)
        base = root if (root / "kv2").is_dir() or not (root / "SUNRGBD").is_dir() else root / "SUNRGBD"
        out = []
        for n, line in enumerate(list_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rel, label = line.split()
                label_i = int(label)
            except ValueError:
                raise UserError(f"{list_file}:{n}: expected '<sensor>/<class>/<id>.png <label>', got {line!r}") from None
            if not 0 <= label_i < len(CLASSES):
                raise UserError(f"{list_file}:{n}: label {label_i} outside 0..9")
            key = Path(rel).name
            if key not in mapping:
                raise UserError(f"{mapping_file}: no entry for {key} (listed in {list_file.name} line {n})")
            target = mapping[key].lstrip("/")
            if target.startswith("SUNRGBD/"):
                target = target[len("SUNRGBD/"):]
            out.append((label_i, base / target))
        if not out:
            raise UserError(f"{list_file}: no samples listed")
        return out

    def split_file(self) -> Path | None:
        """The toolbox's ``allsplit.mat`` (the official train/test split of all SUN RGB-D), if at hand."""
        if self.options["split_file"]:
            p = Path(self.options["split_file"])
            p = p if p.is_absolute() else Path(self.root) / p
            if not p.is_file():
                raise UserError(f"split_file {p} does not exist; pass the toolbox's allsplit.mat")
            return p
        root = Path(self.root)
        for cand in (root / "allsplit.mat", root / "subsets" / "allsplit.mat",
                     root / "SUNRGBDtoolbox" / "traintestSUNRGBD" / "allsplit.mat"):
            if cand.is_file():
                return cand
        return None

    def published_parts(self, folders: list[Path]) -> np.ndarray | None:
        """Per sample: 0 in the official train list, 2 in the test list, -1 in neither (None without the file).
        Samples are matched by their folder below ``SUNRGBD/`` (the lists hold absolute paths of the
        toolbox authors' machine)."""
        path = self.split_file()
        if path is None:
            return None
        from scipy.io import loadmat

        try:
            mat = loadmat(str(path), squeeze_me=True)
            lists = {name: [str(x) for x in np.atleast_1d(mat[name])] for name in ("alltrain", "alltest")}
        except Exception as exc:  # not a MATLAB v5 file, or no alltrain/alltest
            raise UserError(f"{path}: cannot read the lists alltrain/alltest of the toolbox's allsplit.mat "
                            f"({type(exc).__name__}: {str(exc)[:120]})") from None

        def key(p: str) -> str:  # the path below the last SUNRGBD/ (sample folders never contain that name)
            p = p.replace("\\", "/").rstrip("/")
            return p.rsplit("SUNRGBD/", 1)[1] if "SUNRGBD/" in p else p

        part = {key(p): 0 for p in lists["alltrain"]} | {key(p): 2 for p in lists["alltest"]}
        root = Path(self.root)
        keys = [key(f.as_posix()) if "SUNRGBD/" in f.as_posix() else f.relative_to(root).as_posix() for f in folders]
        return np.array([part.get(k, -1) for k in keys], np.int8)

    def _files(self, folder: Path) -> tuple[Path, Path]:
        jpgs = sorted((folder / "image").glob("*.jpg"))
        depths = sorted((folder / self.options["depth_dir"]).glob("*.png"))
        if not folder.is_dir():
            raise UserError(f"{folder}: sample folder missing (from mapping.txt)")
        if len(jpgs) != 1:
            raise UserError(f"{folder}/image: expected one .jpg, found {len(jpgs)}")
        if len(depths) != 1:
            raise UserError(f"{folder}/{self.options['depth_dir']}: expected one 16-bit .png, found {len(depths)}")
        return jpgs[0], depths[0]

    def check_raw(self) -> None:
        for _, folder in self.samples():
            self._files(folder)

    def listing(self) -> RawListing:
        samples = self.samples()
        parts = self.published_parts([folder for _, folder in samples])
        rows = []
        for n, (label, folder) in enumerate(samples):
            jpg, png = self._files(folder)
            rows.append(RawSample(label, {"rgb": jpg, "depth": png}, -1 if parts is None else int(parts[n])))
        return RawListing(rows, published=parts is not None, meta={"depth_dir": self.options["depth_dir"]})

    def decode(self, sample: RawSample) -> dict[str, np.ndarray]:
        size = int(self.options["image_size"]) or None
        rgb = resize(read_rgb(sample.files["rgb"]), size)
        depth = resize(decode_depth(read_png(sample.files["depth"], 16))[None], size)
        return self.same_size({"rgb": rgb, "depth": depth}, sample.files["depth"])
