"""Teachers are finished trials: found by (data set content, repetition, teacher kind), never retrained.

The method that declares ``teaches = "cross-modal"`` provides the cross-modal teacher (its trial on the
rich modality); the one that declares ``teaches = "multi-modal"`` the multi-modal teacher. Both must
have been trained on the student's split.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from cmkd.archs import DEFAULT_ARCH
from cmkd.archs.base import on_meta
from cmkd.errors import UserError
from cmkd.methods import FUSED, DataInfo, get_method, teacher_method

from .corrupt import PARSE_ERRORS, is_damage, reason, set_aside
from .folders import RESULT_FILE, checked_weights, describe_other, is_finished, load_result, trial_dir
from .spec import TrialSpec


def teacher_spec(spec: TrialSpec, kind: str, info: DataInfo) -> TrialSpec:
    """The spec of the trial that serves as ``spec``'s teacher (same data, seed and protocol)."""
    return TrialSpec(
        dataset=spec.dataset,
        method=teacher_method(kind).name,
        seed=spec.seed,
        modality=info.rich if teacher_method(kind).single_modality else None,
        scenario="single",
        method_options=dict(spec.teacher_options),
        dataset_options=spec.dataset_options,
        data_root=spec.data_root,
        train=spec.train,
        data_fingerprint=spec.data_fingerprint,
        arch=spec.teacher_arch,
        pretrained=spec.teacher_pretrained,
        pretrained_hash=spec.teacher_pretrained_hash,
    )


def train_command(tspec: TrialSpec, runs_root: str | Path) -> str:
    """The ``cmkd train`` command that trains exactly ``tspec`` (every train option that is not the default)."""
    parts = ["cmkd", "train", "--method", tspec.method, "--dataset", tspec.dataset, "--seed", str(tspec.seed)]
    if tspec.modality:
        parts += ["--modality", tspec.modality]
    if tspec.arch != DEFAULT_ARCH:
        parts += ["--arch", tspec.arch]
    if tspec.pretrained:
        parts += ["--pretrained", tspec.pretrained]
    parts += tspec.train.cli_flags()
    for k, v in sorted(tspec.method_options.items()):
        parts += ["--opt", f"{k}={_text(v)}"]
    if tspec.teacher_arch != DEFAULT_ARCH:
        parts += ["--teacher-arch", tspec.teacher_arch]
    if tspec.teacher_pretrained:
        parts += ["--teacher-pretrained", tspec.teacher_pretrained]
    for k, v in sorted(tspec.teacher_options.items()):
        parts += ["--teacher-opt", f"{k}={_text(v)}"]
    for k, v in sorted(tspec.dataset_options.items()):
        parts += ["--data-opt", f"{k}={_text(v)}"]
    if tspec.data_root:
        parts += ["--root", str(tspec.data_root)]
    parts += ["--runs", str(runs_root)]
    return " ".join(shlex.quote(p) for p in parts)


def _text(v) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def find_teacher(spec: TrialSpec, kind: str, info: DataInfo, runs_root: str | Path) -> Path:
    tspec = teacher_spec(spec, kind, info)
    folder = trial_dir(runs_root, tspec)
    if not is_finished(folder):
        near = ""
        for other in sorted(folder.parent.glob(f"seed{tspec.seed}-*")):
            if is_finished(other):
                diff = describe_other(load_result(other), tspec)
                near = f"; {other} is a finished {kind} teacher for this seed but differs in {diff}" if diff else ""
                break
        raise UserError(
            f"no finished {kind} teacher for {spec.dataset} seed {spec.seed} under {runs_root} "
            f"(looked for {folder}){near}; train it first: {train_command(tspec, runs_root)}"
        )
    return folder


def load_teacher(
    spec: TrialSpec, kind: str, info: DataInfo, split_fingerprint: str, data_fingerprint: str,
    runs_root: str | Path, device: torch.device,
) -> tuple[nn.Module, dict]:
    """The frozen teacher model (eval mode, no gradients) and its result record."""
    folder = find_teacher(spec, kind, info, runs_root)
    result = load_result(folder)
    if result["split_fingerprint"] != split_fingerprint:
        raise UserError(
            f"teacher {folder} was trained on another split (fingerprint {result['split_fingerprint']}, "
            f"student's {split_fingerprint}); retrain the teacher for this data set and seed"
        )
    if result["data_fingerprint"] != data_fingerprint or result["n_classes"] != info.n_classes:
        raise UserError(
            f"teacher {folder} was trained on other data content (fingerprint {result['data_fingerprint']}, "
            f"student's {data_fingerprint}); retrain the teacher on this data: {train_command(teacher_spec(spec, kind, info), runs_root)}"
        )
    tspec = TrialSpec.from_dict(result["spec"])
    cls = get_method(tspec.method)
    options = tspec.options()
    key = tspec.modality if cls.single_modality else FUSED
    retrain = f"retrain the teacher: {train_command(tspec, runs_root)}"
    path = checked_weights(folder, f"best_{key}.pt", result, retrain)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # the deployable model only
    except PARSE_ERRORS as exc:
        if not is_damage(exc):
            raise
        # its result stands for weights that are gone: both are set aside, so the teacher's next run trains it anew
        set_aside(path, reason(exc), "the teacher's result goes with it")
        set_aside(folder / RESULT_FILE, f"its weights {path.name} did not load", "the teacher is no longer finished")
        raise UserError(f"teacher weights {path} do not load (set aside); {retrain}") from None
    info = replace(info, arch=tspec.arch, teacher_arch=tspec.teacher_arch)  # the teacher's own network
    # no random init for weights about to be replaced (0.18 s of a student's start)
    teacher = on_meta(lambda: cls(info, tspec.modality, options).export(key))
    try:
        teacher.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise UserError(f"teacher weights {path} do not fit a {tspec.arch} {tspec.method} network "
                        f"({str(exc).splitlines()[1].strip()[:120]}); {retrain}") from None
    if any(t.is_meta for t in (*teacher.parameters(), *teacher.buffers())):  # a buffer the weights do not hold
        teacher = cls(info, tspec.modality, options).export(key)
        teacher.load_state_dict(state)
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, result
