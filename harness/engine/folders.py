"""The store of trial folders: where a trial writes, how a finished one is found again.

Layout: ``<root>/<dataset>/<method>[-<variant>][-<modality>]/seed<k>-<trial id>/`` holding
``spec.json``, ``split.npz`` (+ ``split.json``), ``checkpoint.pt`` (last epoch, for resume),
``best_<output>.pt`` (weights at each output's best validation epoch) and ``result.json``, written
last: its presence is what "finished" means.
"""

from __future__ import annotations

from pathlib import Path

from cmkd.errors import UserError

from .io import read_json
from .spec import SPEC_VERSION, TrialSpec, identity_differences

DEFAULT_ROOT = "cmkd-runs"
RESULT_FILE = "result.json"
SPEC_FILE = "spec.json"
CHECKPOINT_FILE = "checkpoint.pt"
#: files a tracked job writes into a trial folder before the engine claims it (its MLflow run id, attempts)
SIDE_FILES = {"mlflow_run_id.txt", ".lock", "attempts.txt"}


def variant_of(spec: TrialSpec) -> str:
    from cmkd.methods import get_method

    cls = get_method(spec.method)
    return cls.variant(spec.options())


def trial_dir(root: str | Path, spec: TrialSpec) -> Path:
    parts = [spec.method]
    v = variant_of(spec)
    if v:
        parts.append(v)
    if spec.modality:
        parts.append(spec.modality)
    if spec.scenario in ("cross-modal", "multi-modal"):  # a distilled trial: one folder per teacher kind
        parts.append(spec.scenario)
    return Path(root) / spec.dataset / "-".join(parts) / f"seed{spec.seed}-{spec.trial_id()}"


def is_finished(folder: str | Path) -> bool:
    return (Path(folder) / RESULT_FILE).exists()


def load_result(folder: str | Path) -> dict:
    return read_json(Path(folder) / RESULT_FILE)


def describe_other(other: dict, spec: TrialSpec) -> str:
    """What differs between a stored spec.json / result.json record and ``spec`` ('' when unreadable)."""
    try:
        diff = identity_differences(TrialSpec.from_dict(other["spec"]).identity(), spec.identity())
    except (KeyError, TypeError, UserError):
        return ""
    if not diff:  # same spec, other identity rules: written by a cmkd whose numbers differ
        diff = [f"spec_version ({other.get('spec_version', 1)!r} -> {SPEC_VERSION!r}): another cmkd version"]
    return ", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")


def claim_folder(folder: Path, spec: TrialSpec) -> None:
    """Make ``folder`` this trial's, or refuse if it holds another run (naming what differs)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"output folder {folder} is a file; choose a new --out")
    spec_path = folder / SPEC_FILE
    if spec_path.exists():
        other = read_json(spec_path)
        if other.get("trial_id") != spec.trial_id():
            diff = describe_other(other, spec)
            raise UserError(
                f"output folder {folder} holds another run (trial {other.get('trial_id')}, method "
                f"{other.get('spec', {}).get('method')}{'; differs in ' + diff if diff else ''}); "
                "choose a new --out or remove that folder"
            )
    elif folder.exists() and any(p.name not in SIDE_FILES for p in folder.iterdir()):
        raise UserError(f"output folder {folder} is not empty and holds no cmkd run; choose a new --out")
