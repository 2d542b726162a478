"""``cmkd predict``: class predictions of an exported model on a NumPy array."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .errors import UserError


def load_exported(path: str | Path):
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no model file {path}; exported models are the model_<modality>.pt2 files of a trial folder")
    import logging
    import warnings

    quiet = logging.getLogger("torch")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # torch logs a traceback-looking warning for a foreign file
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.load(str(path)).module()
    except Exception as exc:  # a wrong or corrupt file
        raise UserError(f"{path} is not a torch.export program ({type(exc).__name__}); pass a model_<modality>.pt2 "
                        "file") from None
    finally:
        quiet.setLevel(level)


def predict(model, array: np.ndarray, batch: int = 256) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(array), batch):
            out.append(model(torch.from_numpy(np.ascontiguousarray(array[s:s + batch], dtype=np.float32))).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def cmd_predict(args: argparse.Namespace) -> int:
    model = load_exported(args.model)
    meta_path = Path(args.model).with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    src = Path(args.input)
    if not src.is_file():
        raise UserError(f"no input file {src}; pass a .npy array N x C x H x W")
    from cmkd.datasets.base import read_npy

    array = read_npy(src, "pass a .npy array N x C x H x W of numbers")
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise UserError(f"{src}: expected an array N x C x H x W (or C x H x W), got shape {array.shape}")
    if meta and array.shape[1] != meta["channels"]:
        raise UserError(f"{src}: the model reads {meta['channels']} channel(s) ({meta['modality']}), "
                        f"the array has {array.shape[1]}")
    if meta.get("image_size") and list(array.shape[2:]) != list(meta["image_size"]):
        h, w = meta["image_size"]
        raise UserError(f"{src}: the model reads {h} x {w} images (as trained), the array has "
                        f"{array.shape[2]} x {array.shape[3]}; resize the input as in training")
    pred = predict(model, array)
    names = meta.get("class_names")
    for i, p in enumerate(pred):
        print(f"{i}\t{int(p)}" + (f"\t{names[int(p)]}" if names else ""))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="class predictions of an exported model (model_<modality>.pt2) on an .npy array")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True, help=".npy array N x C x H x W, preprocessed as in training")
    p.set_defaults(func=cmd_predict)
