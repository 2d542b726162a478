"""Deployable models: each output's kept best weights as a standalone ``torch.export`` program
(``model_<output>.pt2``) and its sidecar (``model_<output>.json``).

A program needs neither cmkd nor the modalities it was not trained to read. The sidecar says how to
feed it exactly as training did: per input modality its channels (in order), image size and the
normalisation the data went through; plus the class names and where the weights came from. The
program and its sidecar are written together, the sidecar last, and removed together.

One code path serves ``cmkd train`` (right after training), ``cmkd export TRIAL_DIR`` (any finished
trial whose best weights were kept) and the sweep's MLflow artifacts: the deployable module is rebuilt
from the trial's spec and the data description stored in its ``result.json`` (no data, no teacher file).
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

import cmkd
from cmkd.errors import UserError

from .corrupt import PARSE_ERRORS, read_json_file, read_or_set_aside, reason
from .io import atomic_save, write_json

SIDECAR_FORMAT = "cmkd-model/1"


def model_path(folder: Path, key: str) -> Path:
    return Path(folder) / f"model_{key}.pt2"


def sidecar_path(model: Path) -> Path:
    return Path(model).with_suffix(".json")


# ---- what a user needs to preprocess new data --------------------------------------------------
def channel_order(dataset: str, modality: str, channels: int) -> list[str]:
    """The channel names of ``modality`` as the adapter declares them (``<modality>[i]`` otherwise)."""
    from cmkd.datasets import DATASETS

    names = getattr(DATASETS.get(dataset), "channel_names", {}).get(modality)
    return list(names) if names and len(names) == channels else [f"{modality}[{i}]" for i in range(channels)]


def normalisation(meta: dict[str, Any], modality: str) -> dict[str, Any] | None:
    """How the trained-on values were derived from the data set's raw values (None: used as stored)."""
    norm = meta.get("normalisation") or (meta.get("manifest") or {}).get("normalisation")
    if norm and modality in norm.get("stats", {}):
        return {"rule": norm.get("rule", ""), "rows": norm.get("rows", ""),
                "per_channel_low_high": [list(map(float, s)) for s in norm["stats"][modality]]}
    return None


def describe_data(data, dataset: str) -> dict[str, Any]:
    """The data description a trial's ``result.json`` keeps for later exports (``deploy``)."""
    from .data import data_info

    info = data_info(data)
    source = str(data.meta.get("source", "generated" if dataset == "synthetic" else ""))
    inputs = {}
    for m, c in info.channels.items():
        sample = info.sample(m)
        inputs[m] = {"modality": m, "kind": sample.kind, "shape": list(sample.shape), "channels": int(c),
                     "image_size": list(sample.image_size) if sample.image_size else None,
                     "channel_order": channel_order(dataset, m, int(c)), "normalisation": normalisation(data.meta, m),
                     "layout": LAYOUTS[len(sample.shape)] + ", float32"}
        if inputs[m]["normalisation"] is None:
            inputs[m]["normalisation_note"] = (
                "none applied by cmkd: feed values as the data set stores them"
                + (f" ({source})" if source else ""))
    described = {k: v for k, v in asdict(info).items() if k not in ("arch", "teacher_arch")}  # the trial's, not the data's
    return {"data_info": {**described, "image_sizes": {m: list(s) for m, s in info.image_sizes.items()},
                          "shapes": {m: list(s) for m, s in info.shapes.items()}},
            "inputs": inputs, "class_names": list(data.class_names)}


#: a batch's layout by the rank of one sample
LAYOUTS = {1: "N x D", 2: "N x T x D", 3: "N x C x H x W", 4: "N x T x C x H x W"}


def data_info_from(deploy: dict[str, Any]):
    from cmkd.methods.base import DataInfo

    d = dict(deploy["data_info"])
    d["image_sizes"] = {m: tuple(s) for m, s in d["image_sizes"].items()}
    d["shapes"] = {m: tuple(s) for m, s in d.get("shapes", {}).items()}
    return DataInfo(**d)


# ---- the module --------------------------------------------------------------------------------
class _Prediction(nn.Module):
    """A method without a standalone export: its ``predict`` for one output (reads a dict)."""

    def __init__(self, method: nn.Module, key: str):
        super().__init__()
        self.method, self.key = method, key

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.method.predict(x)[self.key]


class PositionalInputs(nn.Module):
    """A model that reads several modalities, called with one tensor per modality in sidecar order."""

    def __init__(self, net: nn.Module, modalities: list[str]):
        super().__init__()
        self.net, self.modalities = net, list(modalities)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.net(dict(zip(self.modalities, xs)))


def input_modalities(method, key: str) -> list[str]:
    """What output ``key``'s model reads: its own modality, or (a fused output) everything the method reads."""
    return [key] if key in method.info.channels else list(method.inputs())


def deployed_cost(method, key: str, device: torch.device) -> dict[str, float]:
    """What output ``key``'s deployable model costs: parameters, FLOPs per sample, latency at batch 1 and
    images/s at batch 128 on ``device`` (where the trial ran)."""
    from cmkd.archs.cost import count_module, measure

    module = weights_module(method, key)
    mods = input_modalities(method, key)
    info = method.info

    width = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)  # train.precision

    def make_input(n: int):
        xs = {m: torch.zeros(n, *info.sample(m).shape, device=device, dtype=width) for m in mods}
        if module is method:
            return xs
        return xs[mods[0]] if len(mods) == 1 and key in info.channels else xs

    if module is method:  # no standalone model: its prediction for this output
        module = _Prediction(method, key)
    counted = count_module(module, make_input(1))
    timed = measure(module, make_input, device)
    return {"params": counted.params, "flops": counted.flops, "latency_ms": round(timed.latency_ms, 3),
            "deploy_images_per_s": round(timed.images_per_s, 1)}


def weights_module(method, key: str) -> nn.Module:
    """The module whose state ``best_<key>.pt`` holds (the engine saves exactly this one's weights)."""
    try:
        return method.export(key)
    except NotImplementedError:
        return method


def rebuild(spec, info, key: str, weights: dict[str, torch.Tensor]) -> tuple[nn.Module, list[str]]:
    """Output ``key``'s deployable module, rebuilt from the spec and loaded with ``weights``. A distilled
    method is built around a stand-in teacher of the right architecture (never part of the export)."""
    from cmkd.methods import get_method
    from cmkd.methods.backbones import build_teacher_network

    cls = get_method(spec.method)
    options = spec.options()
    # the data description is the data's; the width and the architectures, the trial's
    info = replace(info, width=spec.train.width, arch=spec.arch, teacher_arch=spec.teacher_arch)
    kind = spec.scenario if cls.teacher_kinds else None
    teacher = build_teacher_network(info, kind).eval() if kind else None
    method = cls(info, spec.modality, options, teacher, kind)
    module = weights_module(method, key)
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        raise UserError(f"the kept weights of output {key!r} do not fit method {spec.method!r} as this cmkd builds it "
                        f"({str(exc).splitlines()[0][:160]}); export with the cmkd version that trained it") from None
    mods = input_modalities(method, key)
    if module is method:
        module = _Prediction(method, key)
    elif len(mods) == 1:
        return module.eval(), mods
    return PositionalInputs(module, mods).eval(), mods


def export_program(module: nn.Module, examples: list[torch.Tensor], path: Path, sidecar: dict[str, Any]) -> Path:
    """``module`` as a ``torch.export`` program for any batch size, then its sidecar (written last: a
    sidecar never exists without its program)."""
    batch = torch.export.Dim("batch", min=1)
    dims = ({0: batch},) if len(examples) == 1 and not isinstance(module, PositionalInputs) else (tuple({0: batch} for _ in examples),)
    with torch.no_grad():
        program = torch.export.export(module.eval(), tuple(examples), dynamic_shapes=dims)
    path.parent.mkdir(parents=True, exist_ok=True)
    side = sidecar_path(path)
    tmp_side = side.with_name(f".{side.stem}.{os.getpid()}.tmp.json")
    try:
        # both complete under temporary names before the old pair is touched (a full disk leaves the old pair)
        write_json({**sidecar, "model": path.name}, tmp_side)
        atomic_save(path.with_name(f".{path.stem}.new{path.suffix}"), lambda tmp: torch.export.save(program, tmp))
        side.unlink(missing_ok=True)  # a sidecar never stands beside a program it does not describe
        os.replace(path.with_name(f".{path.stem}.new{path.suffix}"), path)
        os.replace(tmp_side, side)
    finally:
        tmp_side.unlink(missing_ok=True)
        path.with_name(f".{path.stem}.new{path.suffix}").unlink(missing_ok=True)
    return path


def export_outputs(folder: Path, spec, deploy: dict[str, Any], outputs: dict[str, dict[str, Any]],
                   keys: list[str] | None = None, out: Path | None = None, result: dict | None = None) -> dict[str, str]:
    """Export each output's ``best_<key>.pt`` of a trial folder; returns output -> program path. With the
    trial's ``result`` (an export after the fact), each weights file is checked against its recorded hash."""
    from cmkd.methods.backbones import arch_name

    from .folders import checked_weights

    info = data_info_from(deploy)
    out = Path(out or folder)
    exported = {}
    for key in keys or list(outputs):
        weights_file = Path(folder) / f"best_{key}.pt"
        if not weights_file.is_file():
            raise UserError(f"{folder} keeps no best weights of output {key!r} (best_{key}.pt): a benchmark keeps the "
                            "teachers' weights and each table cell's best-validation seed (keep_weights = \"best\"; "
                            "<bench>/models.csv lists them); set keep_weights = \"all\" to keep every trial's")
        if result is not None:
            checked_weights(folder, weights_file.name, result, "train the trial again")
        try:
            weights = torch.load(weights_file, map_location="cpu", weights_only=True)
        except PARSE_ERRORS as exc:
            raise UserError(f"{weights_file} does not load ({reason(exc)}): "
                            "the file is damaged; restore it, or train the trial again") from None
        module, mods = rebuild(spec, info, key, weights)
        info_for = replace(info, arch=spec.arch)
        inputs = [deploy["inputs"][m] for m in mods]
        examples = [torch.zeros(2, *(d.get("shape") or (d["channels"], *d["image_size"]))) for d in inputs]
        rec = outputs.get(key, {})
        sidecar = {"format": SIDECAR_FORMAT, "output": key, "inputs": inputs, "class_names": deploy["class_names"],
                   "returns": "logits N x classes (softmax gives class probabilities)",
                   "trial_id": spec.trial_id(), "dataset": spec.dataset, "method": spec.method,
                   "scenario": spec.scenario, "seed": spec.seed, "method_options": dict(spec.method_options),
                   "arch": {m: arch_name(info_for, m) for m in mods} if mods else spec.arch,
                   "best_epoch": rec.get("best_epoch"), "val_f1": rec.get("val_f1"), "test_f1": rec.get("test_f1"),
                   "code_version": cmkd.__version__}
        exported[key] = str(export_program(module, examples, model_path(out, key), sidecar))
    return exported


def export_trial(folder: str | Path, keys: list[str] | None = None, out: str | Path | None = None) -> dict[str, str]:
    """``cmkd export TRIAL_DIR``: the deployable models of a finished trial from its kept best weights."""
    from .folders import RESULT_FILE, SPEC_FILE

    folder = Path(folder)
    if not (folder / SPEC_FILE).is_file():
        raise UserError(f"{folder} is not a trial folder (no {SPEC_FILE}); pass a folder under <bench>/runs or cmkd-runs")
    if not (folder / RESULT_FILE).is_file():
        raise UserError(f"{folder} holds no finished trial (no {RESULT_FILE}): finish it first (run the same command again)")
    result, spec = read_trial(folder)
    if out is not None:
        check_export_folder(Path(out), spec.trial_id(), keys or list(result["outputs"]))
    if "deploy" not in result:
        from .data import load_data

        result["deploy"] = describe_data(load_data(spec.dataset, spec.data_root, spec.dataset_options), spec.dataset)
    bad = sorted(set(keys or []) - set(result["outputs"]))
    if bad:
        raise UserError(f"trial {folder.name} has no output {bad[0]!r}; its outputs: {', '.join(result['outputs'])}")
    if not keys:  # every output whose weights were kept (the others' refusal names why, if none was)
        keys = [k for k in result["outputs"] if (folder / f"best_{k}.pt").is_file()] or list(result["outputs"])
    return export_outputs(folder, spec, result["deploy"], result["outputs"], keys, Path(out) if out else None, result)


def read_trial(folder: Path):
    """A finished trial folder's result and spec, or one line naming the file that does not parse."""
    from .folders import RESULT_FILE, SPEC_FILE
    from .spec import TrialSpec

    try:
        result = read_json_file(folder / RESULT_FILE)
        result["outputs"].items()
    except PARSE_ERRORS as exc:
        raise UserError(f"{folder / RESULT_FILE} does not parse ({type(exc).__name__}): the trial's record is damaged; "
                        "run the trial's command again (its next run sets the file aside and trains it anew)") from None
    try:
        spec = TrialSpec.from_dict(read_json_file(folder / SPEC_FILE)["spec"])
    except PARSE_ERRORS as exc:
        raise UserError(f"{folder / SPEC_FILE} does not parse ({type(exc).__name__}): the trial's spec is damaged; "
                        "run the trial's command again (its next run sets the file aside)") from None
    return result, spec


def check_export_folder(out: Path, trial_id: str, keys: list[str]) -> None:
    """An export directory is the user's, or this trial's: never another trial's folder, a benchmark's
    folder, nor another trial's export of the same output."""
    from .folders import BENCH_FILE, RESULT_FILE, SPEC_FILE

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder")
    for marker, what in ((SPEC_FILE, "trial"), (RESULT_FILE, "trial"), (BENCH_FILE, "benchmark")):
        if (out / marker).is_file():
            other = read_or_set_aside(out / marker, read_json_file, "it is ignored") or {}
            if what == "benchmark" or other.get("trial_id") != trial_id:
                raise UserError(f"--out {out} is another {what}'s folder ({marker}); export into a folder of your own")
    for key in keys:
        side = sidecar_path(model_path(out, key))
        if side.is_file():
            other = read_or_set_aside(side, read_json_file, "it is replaced") or {}
            if other.get("trial_id") not in (None, trial_id):
                raise UserError(f"--out {out} holds trial {other.get('trial_id')}'s export of output {key!r} "
                                f"({side.name}); export into another folder, or remove that pair first")
