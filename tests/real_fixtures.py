"""Small data sets in the real published formats, files written in shuffled order.

Each sample's id is written into its pixels (MS band 0 = 100 + id, SAR band 0 = -(id + 1) dB;
depth in mm = 1000 + 10 id; thermal = 29000 + id), so a test can check that pairing went by name.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from cmkd.datasets.sunrgbd import encode_depth

GEO_TAGS = [(33550, "d", 3, (10.0, 10.0, 0.0), False), (33922, "d", 6, (0, 0, 0, 500000.0, 5500000.0, 0), False),
            (34735, "H", 4, (1, 1, 0, 0), False)]


def write_eurosat(root: Path, classes=("Forest", "AnnualCrop", "River"), per_class=10, size=16, deep=True) -> dict:
    """MS: uint16 13-band GeoTIFFs, SAR: float32 2-band GeoTIFFs; returns {(class, name): id}."""
    rng = random.Random(0)
    ms_root = root / "ds/images/remote_sensing/otherDatasets/sentinel_2/tif" if deep else root / "EuroSAT-MS"
    sar_root = root / "EuroSAT-SAR"
    items = [(c, i) for c in classes for i in range(1, per_class + 1)]
    rng.shuffle(items)
    ids = {}
    for sid, (c, i) in enumerate(items):
        name = f"{c}_{i}"
        ids[(c, name)] = sid
        ms = np.random.default_rng(sid).integers(500, 3000, size=(size, size, 13)).astype(np.uint16)
        ms[:, :, 0] = 100 + sid
        sar = np.random.default_rng(1000 + sid).normal(-12, 5, size=(size, size, 2)).astype(np.float32)
        sar[:, :, 0] = -(sid + 1)
        for tree, arr in ((ms_root, ms), (sar_root, sar)):
            (tree / c).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(tree / c / f"{name}.tif", arr, planarconfig="contig", extratags=GEO_TAGS)
    return ids


SUN_CLASSES = {0: "bathroom", 2: "classroom", 8: "office"}


def write_sunrgbd(root: Path, per_class=10, size=(20, 15), depth_dir="depth_bfx") -> dict:
    """SUN RGB-D folders (image/*.jpg, depth*/ *.png bit-rotated 16-bit) plus kv2.txt and mapping.txt."""
    rng = random.Random(1)
    items = [(label, k) for label in SUN_CLASSES for k in range(per_class)]
    rng.shuffle(items)
    lines, mapping, depth_mm = [], ["id -> path"], {}
    for n, (label, k) in enumerate(items):
        sid = 4244 + n
        folder = f"kv2/kinect2data/{sid:06d}_2014-06-{k:02d}_scene"
        base = root / "SUNRGBD" / folder
        (base / "image").mkdir(parents=True)
        (base / "depth").mkdir()
        (base / "depth_bfx").mkdir()
        img = np.random.default_rng(sid).integers(0, 255, size=(size[1], size[0], 3)).astype(np.uint8)
        Image.fromarray(img).save(base / "image" / f"img_{sid}.jpg", quality=95)
        mm = np.full((size[1], size[0]), 1000 + 10 * n, np.uint16)
        mm[0, 0] = 0  # missing
        for d in ("depth", "depth_bfx"):
            Image.fromarray(encode_depth(mm)).save(base / d / f"d_{sid}.png")
        depth_mm[sid] = 1000 + 10 * n
        lines.append(f"kv2/{SUN_CLASSES[label]}/{sid}.png {label}")
        mapping.append(f"{sid}.png -> /SUNRGBD/{folder}")
    (root / "subsets").mkdir(parents=True)
    (root / "subsets/kv2.txt").write_text("\n".join(lines) + "\n")
    (root / "subsets/mapping.txt").write_text("\n".join(mapping) + "\n")
    return depth_mm


TAGS = ["get_down", "get_up", "sit", "walk", "stand", "lay"]


def write_tristar(root: Path, shots_per_split=2, frames=6, size=(16, 12)) -> int:
    """train/val/test shot folders with 16-bit depth and thermal PNGs, rgb JPG-free PNGs, actions.txt.

    Returns how many frames carry exactly one of the six tags."""
    rng = random.Random(2)
    kept = 0
    counter = 0
    for split in ("train", "val", "test"):
        for shot in range(shots_per_split):
            base = root / split / str(shot)
            for m in ("rgb", "depth", "thermal"):
                (base / m).mkdir(parents=True)
            lines = []
            order = list(range(frames))
            rng.shuffle(order)
            for f in order:
                counter += 1
                stem = f"{counter:06d}_{counter * 40:010d}"
                Image.fromarray(np.full((size[1], size[0]), 2000 + counter, np.uint16)).save(base / "depth" / f"{stem}.png")
                Image.fromarray(np.full((size[1], size[0]), 29000 + counter, np.uint16)).save(base / "thermal" / f"{stem}.png")
                Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8) + counter % 255).save(base / "rgb" / f"{stem}.png")
                kind = f % 3
                if kind == 0:
                    tags = [TAGS[counter % 6], "in_room"]  # one of the six (+ a location tag)
                    kept += 1
                elif kind == 1:
                    tags = ["out_of_view"]  # none of the six
                else:
                    tags = ["sit", "get_up"]  # two of the six: dropped
                lines.append(" ".join([stem, *tags]))
            rng.shuffle(lines)
            (base / "actions.txt").write_text("\n".join(lines) + "\n")
    return kept
