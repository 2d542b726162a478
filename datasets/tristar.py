"""TRISTAR (Stippel et al. 2023): thermal (1) + depth (1), optionally RGB (3); 6 action classes.

Walks every shot folder of ``train/``, ``val/`` (or ``validation/``) and ``test/``, parses each shot's
``actions.txt`` (``<frame-id> <tag> ...``), keeps the frames carrying exactly one of the six tags
get_down 0, get_up 1, sit 2, walk 3, stand 4, lay 5 (the order of the dataset authors' action head),
reads the 16-bit PNGs at full depth, pairs the modalities by file name, and resizes to
``image_size`` (default 128, square). The paper reports 14,201 pairs; the count kept is printed.
With ``split = "paper"`` (the default) the official splits are pooled and re-split 70/10/20 by
frame, as the paper's protocol implies: consecutive frames are near-duplicates, so frame-level
splits leak across train and test. ``split = "published"`` keeps TRISTAR's own train/val/test
recordings instead: whole shots on one side, no frame of a shot on both.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from cmkd.errors import UserError

from .preprocess import read_png, read_rgb, resize
from .real_base import RawListing, RawSample, RealDataset
from .registry import register_dataset

CLASSES = ["get_down", "get_up", "sit", "walk", "stand", "lay"]
SPLIT_DIRS = (("train",), ("val", "validation"), ("test",))


@register_dataset("tristar")
class Tristar(RealDataset):
    label = "TRISTAR"
    paper_column = 3
    description = "TRISTAR: thermal (1, rich) + depth (1) [+ rgb (3) with with_rgb=true], 6 action classes"
    modalities = {"thermal": 1, "depth": 1}
    rich = "thermal"
    class_names = CLASSES
    declared_samples = 14201  # the paper's pair count
    declared_image_size = 128
    channel_names = {"thermal": ["thermal"], "depth": ["depth"], "rgb": ["R", "G", "B"]}
    official_prefixes = {"THERMAL": "thermal", "DEPTH": "depth", "RGB": "rgb"}
    default_options = {"image_size": 128, "with_rgb": False, "norm_stats": "all"}

    def modality_channels(self) -> dict[str, int]:
        chans = {"thermal": 1, "depth": 1}
        if self.options.get("with_rgb"):
            chans["rgb"] = 3
        return chans

    def shots(self) -> list[tuple[int, Path]]:
        """(published part: 0 train, 1 val, 2 test; shot folder) for every shot of the three splits."""
        root = Path(self.root)
        shots = []
        for part, names in enumerate(SPLIT_DIRS):
            found = [root / n for n in names if (root / n).is_dir()]
            if not found:
                raise UserError(f"{root}: no {' or '.join(names)}/ folder; expected TRISTAR's train/, val/, test/ shot folders")
            shots += [(part, p) for p in sorted((p for p in found[0].iterdir() if p.is_dir()),
                                                key=lambda p: (len(p.name), p.name))]
        if not shots:
            raise UserError(f"{root}: no shot folders under train/, val/, test/")
        return shots

    def frames(self) -> list[tuple[int, dict[str, Path]]]:
        return [(label, paths) for label, paths, _, _ in self.frames_with_origin()]

    def frames_with_origin(self) -> list[tuple[int, dict[str, Path], int, int]]:
        """(label, paths, published part, shot number) per kept frame."""
        mods = list(self.modality_channels())
        out = []
        for shot_no, (part, shot) in enumerate(self.shots()):
            actions = shot / "actions.txt"
            if not actions.is_file():
                raise UserError(f"{shot}: actions.txt is missing")
            files = {m: {p.stem: p for p in (shot / m).glob("*.png")} if (shot / m).is_dir() else None for m in mods}
            for m, f in files.items():
                if f is None:
                    raise UserError(f"{shot}: the {m}/ folder is missing")
            by_counter = {stem.split("_")[0]: stem for stem in files[mods[0]]}
            for n, line in enumerate(actions.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                tags = [t for t in parts[1:] if t in CLASSES]
                if len(tags) != 1:
                    continue
                stem = parts[0] if parts[0] in files[mods[0]] else by_counter.get(parts[0])
                if stem is None:
                    raise UserError(f"{actions}:{n}: frame {parts[0]!r} has no {mods[0]} image in {shot / mods[0]}")
                missing = [m for m in mods if stem not in files[m]]
                if missing:
                    raise UserError(f"{shot}: frame {stem}.png exists in {mods[0]}/ but not in {', '.join(missing)}/ (unpaired)")
                out.append((CLASSES.index(tags[0]), {m: files[m][stem] for m in mods}, part, shot_no))
        if not out:
            raise UserError(f"{self.root}: no frame carries exactly one of {', '.join(CLASSES)}")
        return out

    def check_raw(self) -> None:
        self.frames()

    def listing(self) -> RawListing:
        frames = self.frames_with_origin()
        print(f"tristar: {len(frames)} frames kept with exactly one of the six tags (the paper reports 14,201)",
              file=sys.stderr)
        # the published split (split = "published"): TRISTAR's own train/val/test recordings, whole shots
        return RawListing([RawSample(label, paths, part, shot) for label, paths, part, shot in frames],
                          published=True, grouped=True, meta={"frames_kept": len(frames)})

    def decode(self, sample: RawSample) -> dict[str, np.ndarray]:
        size = int(self.options["image_size"]) or None
        rows = {m: resize(read_rgb(p) if m == "rgb" else read_png(p, 16).astype(np.float32)[None], size)
                for m, p in sample.files.items()}
        return self.same_size(rows, next(iter(sample.files.values())))
