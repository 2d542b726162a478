"""The store of trial folders: where a trial writes, how a finished one is found again.

Layout: ``<root>/<dataset>/<method>[-<variant>][-<modality>]/seed<k>-<trial id>/`` holding
``spec.json``, ``split.npz`` (+ ``split.json``), ``checkpoint.pt`` (last epoch, for resume),
``best_<output>.pt`` (weights at each output's best validation epoch) and ``result.json``, written
last: its presence is what "finished" means.
"""

from __future__ import annotations

from pathlib import Path

from cmkd.errors import UserError

from .corrupt import CORRUPT_DIR, read_json_file, read_or_set_aside
from .spec import SPEC_VERSION, TrialSpec, identity_differences

DEFAULT_ROOT = "cmkd-runs"
RESULT_FILE = "result.json"
SPEC_FILE = "spec.json"
CHECKPOINT_FILE = "checkpoint.pt"
#: a benchmark folder's marker (its name and config hash): ``cmkd bench`` claims a folder by writing it
BENCH_FILE = "bench.json"
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


def _result(path: Path) -> dict:
    result = read_json_file(path)
    if not isinstance(result.get("trial_id"), str) or not isinstance(result.get("outputs"), dict):
        raise ValueError("has no trial_id or outputs")
    return result


def read_result(folder: str | Path) -> dict | None:
    """The trial's ``result.json``; None when absent, or when it does not parse (then set aside: the trial
    is no longer finished and its next run trains it again)."""
    return read_or_set_aside(Path(folder) / RESULT_FILE, _result, "the trial is no longer finished and its next run "
                                                                  "trains it again")


def is_finished(folder: str | Path) -> bool:
    return (Path(folder) / RESULT_FILE).exists() and read_result(folder) is not None


def load_result(folder: str | Path) -> dict:
    result = read_result(folder)
    if result is None:
        raise UserError(f"{Path(folder) / RESULT_FILE} is missing: {folder} holds no finished trial; run it again")
    return result


def read_spec_file(folder: Path) -> dict | None:
    """The folder's ``spec.json``; a corrupt one is set aside (the folder is then claimed anew)."""
    def parse(path: Path) -> dict:
        other = read_json_file(path)
        if not isinstance(other.get("trial_id"), str):
            raise ValueError("has no trial_id")
        return other

    return read_or_set_aside(folder / SPEC_FILE, parse, "the folder is claimed anew")


#: what a trial writes into its folder (a folder holding only these, and no spec.json, is a trial's whose
#: spec.json was set aside)
TRIAL_FILES = ("split.npz", "split.json", CHECKPOINT_FILE, CORRUPT_DIR)


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
    other = read_spec_file(folder) if (folder / SPEC_FILE).exists() else None
    if other is not None:
        if other.get("trial_id") != spec.trial_id():
            diff = describe_other(other, spec)
            raise UserError(
                f"output folder {folder} holds another run (trial {other.get('trial_id')}, method "
                f"{other.get('spec', {}).get('method')}{'; differs in ' + diff if diff else ''}); "
                "choose a new --out or remove that folder"
            )
    elif folder.exists() and any(p.name not in SIDE_FILES and not _trial_file(p.name) for p in folder.iterdir()):
        raise UserError(f"output folder {folder} is not empty and holds no cmkd run; choose a new --out")


def _trial_file(name: str) -> bool:
    return name in TRIAL_FILES or (name.startswith("best_") and name.endswith(".pt")) or (
        name.startswith("model_") and name.endswith((".pt2", ".json"))) or (name.startswith(".") and ".tmp" in name)


def remove_stale_temporaries(folder: Path) -> list[str]:
    """Delete the half-written files of writers that died (a SIGKILLed run): ``.<name>.*.tmp*`` and an
    export's ``.<model>.new.pt2`` waiting for its rename. Called under the trial's folder lock, when no
    writer of this folder can be alive."""
    gone = []
    for p in (*folder.glob(".*.tmp*"), *folder.glob(".*.new.*")):
        if p.is_file():
            p.unlink(missing_ok=True)
            gone.append(p.name)
    return gone


def checked_weights(folder: str | Path, name: str, result: dict, fix: str) -> Path:
    """``<folder>/<name>`` (a kept weights file of a finished trial), refused in one line when it is missing
    or its content is not what ``result.json`` recorded when the trial finished (a swapped or damaged
    file: a teacher's students and an export would otherwise use it silently). ``fix`` ends the message."""
    from cmkd.archs.weights import content_hash

    path = Path(folder) / name
    if not path.is_file():
        raise UserError(f"{path} is missing; {fix}")
    recorded = (result.get("weights_sha256") or {}).get(name)
    if recorded is not None and content_hash(path) != recorded:
        raise UserError(f"{path} changed since the trial finished (hash {content_hash(path)}, recorded {recorded}); "
                        f"restore that file, or {fix}")
    return path
