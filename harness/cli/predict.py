"""``cmkd predict`` and ``cmkd export``: run an exported model on new data; export a finished trial.

``predict`` reads the model's sidecar (``model_<output>.json``) first and checks the input against it
(channels, image size) before anything runs; it applies the sidecar's normalisation unless the
input is already normalised (``--normalized``). Input: an ``.npy`` batch (N x C x H x W, or one
C x H x W sample), one image, or a folder of images / ``.npy`` samples (read in name order). A model
that reads several modalities takes one ``--input MODALITY=PATH`` per modality.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

from cmkd.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy")


def require_model(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no model file {path}; exported models are the model_<output>.pt2 files of a trial folder "
                        "(cmkd export TRIAL_DIR writes them)")
    return path


def load_exported(path: str | Path):
    import logging
    import warnings

    import torch

    path = require_model(path)
    quiet = logging.getLogger("torch")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # torch logs a traceback-looking warning for a foreign file
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.load(str(path)).module()
    except Exception as exc:  # a wrong or corrupt file
        raise UserError(f"{path} is not a torch.export program ({type(exc).__name__}); pass a model_<output>.pt2 "
                        "file") from None
    finally:
        quiet.setLevel(level)


def read_sidecar(model: Path) -> dict:
    path = Path(model).with_suffix(".json")
    if not path.is_file():
        raise UserError(f"{model} has no sidecar {path.name} (what the model reads: channels, image size, "
                        f"normalisation); export it again with cmkd export TRIAL_DIR")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        for spec in meta["inputs"]:
            spec["channels"], spec["modality"], list(spec.get("shape") or spec["image_size"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise UserError(f"{path} is not a cmkd model sidecar (written by an older cmkd?); export the model again "
                        "with cmkd export TRIAL_DIR") from None
    return meta


def _read_image(path: Path) -> np.ndarray:
    """One sample as C x H x W float32, its values as stored (no scaling)."""
    if path.suffix == ".npy":
        from cmkd.datasets.base import read_npy

        arr = read_npy(path, "pass a C x H x W array per file")
        return arr.astype(np.float32) if arr.ndim == 3 else arr[None].astype(np.float32)
    try:
        if path.suffix in (".tif", ".tiff"):
            import tifffile

            arr = np.asarray(tifffile.imread(path))
            # (H, W, C) as most writers store it, unless the first axis is clearly the bands
            arr = arr if arr.ndim == 2 else (arr if arr.shape[0] < min(arr.shape[1:]) else np.moveaxis(arr, -1, 0))
        else:
            from PIL import Image

            with Image.open(path) as img:
                arr = np.asarray(img)
                arr = arr if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    except Exception as exc:  # noqa: BLE001 - any unreadable image
        raise UserError(f"{path}: not a readable image ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    return (arr[None] if arr.ndim == 2 else arr).astype(np.float32)


def read_input(src: Path, sample_rank: int = 3) -> tuple[np.ndarray, list[str]]:
    """(N x one sample array, one name per row) from an .npy batch (or one sample of rank ``sample_rank``), one
    image, or a folder of them. Vectors and sequences come as .npy only."""
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"{src} holds no image ({', '.join(IMAGE_SUFFIXES)}); pass a folder of images or an .npy batch")
        samples = [_read_image(p) for p in files]
        channels = {}
        for f, s in zip(files, samples):
            channels.setdefault(s.shape[0], f.name)
        if len(channels) > 1:  # e.g. RGB images beside one-channel depth maps: two modalities in one folder
            found = ", ".join(f"{c} channel(s) ({name})" for c, name in sorted(channels.items()))
            raise UserError(f"{src}: the files have different channel counts ({found}): a folder holds one modality; "
                            "put each modality in its own folder (a multi-input model takes --input MOD=FOLDER per modality)")
        shapes = {s.shape for s in samples}
        if len(shapes) > 1:
            raise UserError(f"{src}: the images differ in shape ({', '.join(f'{s[1]} x {s[2]}' for s in sorted(shapes)[:3])}); "
                            "resize them as in training")
        return np.stack(samples), [p.name for p in files]
    if not src.is_file():
        raise UserError(f"no input {src}; pass an .npy array N x C x H x W, an image, or a folder of images")
    if src.suffix.lower() == ".npy":
        from cmkd.datasets.base import read_npy

        from cmkd.harness.engine.deploy import LAYOUTS

        layout = LAYOUTS[sample_rank]
        arr = read_npy(src, f"pass a .npy array {layout} of numbers")
        if arr.ndim == sample_rank:
            arr = arr[None]
        if arr.ndim != sample_rank + 1:
            raise UserError(f"{src}: expected an array {layout} (or one sample, {layout[4:]}), got shape {arr.shape}")
        return arr.astype(np.float32, copy=False), [str(i) for i in range(len(arr))]
    if src.suffix.lower() in IMAGE_SUFFIXES:
        return _read_image(src)[None], [src.name]
    raise UserError(f"{src}: unknown input type {src.suffix!r}; pass .npy, an image ({', '.join(IMAGE_SUFFIXES[:-1])}) "
                    "or a folder of them")


def check_and_normalise(arr: np.ndarray, spec: dict, src: str, normalized: bool) -> np.ndarray:
    """Refuse an input the model cannot read, in one line naming what differs; apply the training-time
    normalisation unless ``normalized``."""
    m, c, size = spec["modality"], spec["channels"], list(spec["image_size"] or [])
    if len(arr) == 0:
        raise UserError(f"{src}: the input holds no sample (shape {tuple(arr.shape)}); pass one sample at least")
    if spec.get("kind", "image") not in ("image", "spectrogram"):
        if list(arr.shape[1:]) != list(spec["shape"]):
            raise UserError(f"{src}: the model reads {spec['kind']} samples of shape {tuple(spec['shape'])} for {m} "
                            f"({spec['layout']}), the input's samples are {tuple(arr.shape[1:])}")
        arr = np.asarray(arr)
        if not np.isfinite(arr).all():
            raise UserError(f"{src}: values NaN or infinite; the model's answer to them would be NaN: fix or drop "
                            "those samples")
        return np.ascontiguousarray(arr, dtype=np.float32)
    if arr.shape[1] != c:
        order = spec.get("channel_order") or []
        raise UserError(f"{src}: the model reads {c} channel(s) of {m}{' (' + ', '.join(order) + ')' if order else ''}, "
                        f"the input has {arr.shape[1]}")
    if list(arr.shape[2:]) != size:
        raise UserError(f"{src}: the model reads {size[0]} x {size[1]} {m} images (as trained), the input is "
                        f"{arr.shape[2]} x {arr.shape[3]}; resize it as in training")
    finite = np.isfinite(arr)
    if not finite.all():
        row = int(np.argwhere(~finite.reshape(len(arr), -1).all(axis=1))[0][0])
        raise UserError(f"{src}: {int((~finite).sum())} value(s) NaN or infinite (first in sample {row}); the model's "
                        "answer to them would be NaN: fix or drop those samples")
    norm = spec.get("normalisation")
    if norm and not normalized:
        from cmkd.datasets.preprocess import apply_stats

        arr = apply_stats(arr, [tuple(s) for s in norm["per_channel_low_high"]])
    return np.ascontiguousarray(arr, dtype=np.float32)


def predict_logits(model, arrays: list[np.ndarray], batch: int = 256) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(arrays[0]), batch):
            out.append(model(*[torch.from_numpy(a[s:s + batch]) for a in arrays]).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _inputs_by_modality(given: list[str], specs: list[dict]) -> dict[str, str]:
    mods = [s["modality"] for s in specs]
    if len(mods) == 1:
        if len(given) != 1:
            raise UserError(f"the model reads one modality ({mods[0]}): pass one --input")
        path = given[0].split("=", 1)[1] if given[0].startswith(f"{mods[0]}=") else given[0]
        if not path.strip():
            raise UserError(f"--input {given[0]!r} names no file; pass --input {mods[0]}=PATH")
        return {mods[0]: path}
    pairs = dict(g.split("=", 1) for g in given if "=" in g)
    empty = [m for m, p in pairs.items() if not p.strip()]
    if empty:
        raise UserError(f"--input {empty[0]}= names no file; pass --input {empty[0]}=PATH")
    missing = [m for m in mods if m not in pairs]
    if missing or len(pairs) != len(given):
        raise UserError(f"the model reads {len(mods)} modalities: pass --input MODALITY=PATH for each of "
                        f"{', '.join(mods)}" + (f" (missing {missing[0]})" if missing else ""))
    return {m: pairs[m] for m in mods}


def _check_output_file(out: Path) -> None:
    """--output is a file this user may write (checked before the inputs are read or the model runs)."""
    if out.is_dir():
        raise UserError(f"--output {out} is a folder; pass a file name (e.g. {out / 'predictions.csv'})")
    folder = out.parent
    if not (folder.is_dir() if folder.exists() else True) or (folder.exists() and not os.access(folder, os.W_OK)) or (
            out.exists() and not os.access(out, os.W_OK)):
        raise UserError(f"--output {out} cannot be written (its folder or the file is read-only); pass another path")


def cmd_predict(args: argparse.Namespace) -> int:
    model_path = require_model(args.model)
    meta = read_sidecar(model_path)
    if args.output:
        _check_output_file(Path(args.output))
    specs = meta["inputs"]
    paths = _inputs_by_modality(args.input, specs)
    arrays, names = [], None
    for spec in specs:  # everything is read and checked before the model is loaded or run
        arr, row_names = read_input(Path(paths[spec["modality"]]), len(spec.get("shape") or [0, 0, 0]))
        arrays.append(check_and_normalise(arr, spec, paths[spec["modality"]], args.normalized))
        if names is not None and len(row_names) != len(names):
            raise UserError(f"the inputs hold {len(names)} and {len(row_names)} samples: pass one per modality and sample")
        names = names or row_names
    logits = predict_logits(load_exported(model_path), arrays)
    classes = meta.get("class_names") or [str(i) for i in range(logits.shape[1])]
    pred = logits.argmax(1)
    probs = None
    if args.probs:
        z = logits - logits.max(1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    header = ["input", "prediction", "class_name"] + ([f"p_{c}" for c in classes] if probs is not None else [])
    rows = [[name, int(p), classes[int(p)]] + ([f"{v:.6g}" for v in probs[i]] if probs is not None else [])
            for i, (name, p) in enumerate(zip(names, pred))]
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as fh:
            csv.writer(fh).writerows([header, *rows])
        print(f"{len(rows)} predictions of {model_path.name} ({meta.get('method')}, output {meta.get('output')}): {out}")
    else:
        writer = csv.writer(sys.stdout, delimiter="\t", lineterminator="\n")
        writer.writerows([header, *rows])
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cmkd.harness.engine.deploy import export_trial

    from cmkd.results.modelcard import write_cards

    written = export_trial(args.trial_dir, args.output or None, args.out)
    write_cards(args.trial_dir, written)
    for key, path in written.items():
        print(f"output {key}: {path} (+ {Path(path).with_suffix('.json').name}: channels, image size, normalisation; "
              f"{Path(path).with_suffix('.md').name}: its model card)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="class predictions (and probabilities) of an exported model on new data")
    p.add_argument("--model", required=True, help="a model_<output>.pt2 file (its .json sidecar beside it)")
    p.add_argument("--input", required=True, action="append", metavar="[MODALITY=]PATH",
                   help="an .npy batch N x C x H x W, one image, or a folder of images/.npy samples; one per modality "
                        "(MODALITY=PATH) for a model that reads several")
    p.add_argument("--normalized", action="store_true",
                   help="the input is already normalised as in training (else the sidecar's normalisation is applied)")
    p.add_argument("--probs", action="store_true", help="also print the class probabilities (softmax of the logits)")
    p.add_argument("--output", metavar="FILE.csv", help="write the predictions as CSV instead of printing them")
    p.set_defaults(func=cmd_predict)

    e = sub.add_parser("export", help="a finished trial's kept best weights as deployable models (.pt2 + sidecar)")
    e.add_argument("trial_dir", metavar="TRIAL_DIR", help="a trial folder (under <bench>/runs or cmkd-runs)")
    e.add_argument("--output", action="append", metavar="KEY", help="only this output (repeatable; default: every kept one)")
    e.add_argument("--out", help="write the models here (default: the trial folder)")
    e.set_defaults(func=cmd_export)
