"""A model card beside each exported model: ``model_<output>.md``.

The card is Markdown with a ``model-index`` YAML block, as the Hugging Face Hub reads it (task, data set,
metric), and the facts the sidecar already holds, in words: what goes in, what comes out, how it was
trained, what it costs. When the trial belongs to a benchmark folder, the card also states the weighted F1
of the same cell over every seed (mean and 95% t interval) and STUDENT's in the same column: the limits
known from this benchmark, not only this seed's number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmkd.harness.engine.folders import BENCH_FILE

#: the row identity that makes two trials the same table cell, seeds apart
CELL_KEYS = ("dataset", "entry", "scenario", "method", "variant", "ablation", "arch", "teacher_arch")


@dataclass(frozen=True)
class SeedSpread:
    """One cell of a benchmark over its seeds: the model's own cell, or STUDENT's beside it."""

    n: int
    mean: float
    low: float | None
    high: float | None

    def text(self) -> str:
        ci = f", 95% t interval {self.low:.2f} to {self.high:.2f}" if self.low is not None else " (one seed: no interval)"
        return f"{self.mean:.2f} mean over {self.n} seed(s){ci}"


def card_path(model: Path) -> Path:
    return Path(model).with_suffix(".md")


def bench_of(trial_folder: Path) -> Path | None:
    """The benchmark folder holding a trial folder (``<bench>/runs/<data>/<method>/<trial>``), if any."""
    for parent in Path(trial_folder).resolve().parents:
        if (parent / BENCH_FILE).is_file() and (parent / "results").is_dir():
            return parent
    return None


def spreads(bench: Path, trial_id: str, key: str) -> tuple[SeedSpread | None, SeedSpread | None]:
    """The trial's cell and STUDENT's in the same column, over the benchmark's finished seeds."""
    from cmkd.methods import teacher_method
    from .stats import t_interval
    from .store import ResultsStore

    rows = ResultsStore(bench / "results").rows()
    rows = rows[(rows.status == "finished") & (rows.modality == key)]
    me = rows[rows.trial_id == trial_id]
    if me.empty:
        return None, None
    ident = me.iloc[0]
    same = rows[(rows[list(CELL_KEYS)].fillna("") == ident[list(CELL_KEYS)].fillna("")).all(axis=1)]
    student = rows[(rows.method == teacher_method("cross-modal").name) & (rows.dataset == ident.dataset)
                   & (rows.entry.fillna("") == (ident.entry or "")) & (rows.arch == ident.arch)]

    def spread(df) -> SeedSpread | None:
        values = (df.drop_duplicates("trial_id").test_f1 * 100).tolist()
        if not values:
            return None
        ci = t_interval(values)
        return SeedSpread(len(values), sum(values) / len(values), *(ci if ci else (None, None)))

    return spread(same), None if ident.method == teacher_method("cross-modal").name else spread(student)


#: the model-index task of a model whose inputs are all of one kind (a sequence: of frames, or of steps)
TASKS = {"image": ("image-classification", "Image classification"),
         "spectrogram": ("audio-classification", "Audio classification"),
         "vector": ("tabular-classification", "Tabular classification"),
         "frames": ("video-classification", "Video classification"),
         "steps": ("time-series-classification", "Time-series classification")}


def task_of(inputs: list[dict[str, Any]]) -> dict[str, str]:
    """The card's task from what the model reads (images, spectrograms, vectors, sequences; several kinds:
    multi-modal classification)."""
    kinds = set()
    for spec in inputs:
        kind = spec.get("kind", "image")
        if kind == "sequence":
            kind = "frames" if len(spec.get("shape") or []) == 4 else "steps"
        kinds.add(kind)
    kind, name = TASKS[kinds.pop()] if len(kinds) == 1 else ("multimodal-classification", "Multi-modal classification")
    return {"type": kind, "name": name}


def model_card(sidecar: dict[str, Any], costs: dict[str, float], teacher: str, cell: SeedSpread | None,
               student: SeedSpread | None) -> str:
    """The card's Markdown: the ``model-index`` front matter, then the facts and the limits."""
    key, f1 = sidecar["output"], sidecar.get("test_f1")
    dataset = sidecar["dataset"]
    metrics = [{"type": "f1", "name": "Weighted F1 (%), this model, test split", "value": _r(f1 * 100 if f1 is not None else None),
                "args": {"average": "weighted"}}]
    if cell is not None:
        metrics.append({"type": "f1", "name": f"Weighted F1 (%), mean over {cell.n} seed(s) of this benchmark cell",
                        "value": _r(cell.mean), "args": {"average": "weighted", "seeds": cell.n,
                                                          "ci95": [_r(cell.low), _r(cell.high)] if cell.low is not None else None}})
    index = {"model-index": [{"name": f"cmkd-{sidecar['method']}-{dataset}-{key}-seed{sidecar['seed']}",
                              "results": [{"task": task_of(sidecar["inputs"]),
                                           "dataset": {"name": dataset, "type": dataset, "split": "test"},
                                           "metrics": metrics}]}]}
    inputs = sidecar["inputs"]
    lines = ["---", _yaml(index).rstrip(), "---", "",
             f"# {sidecar['method']} on {dataset}: the {key} model (seed {sidecar['seed']})", "",
             "Exported by `cmkd export` from a finished cmkd-bench trial. The program is `"
             + sidecar["model"] + "` (a `torch.export` program; `cmkd predict --model` runs it) and `"
             + Path(sidecar["model"]).with_suffix(".json").name + "` is its sidecar.", "",
             "## Facts", "",
             "| | |", "|---|---|"]
    for spec in inputs:
        norm = spec.get("normalisation") or spec.get("normalisation_note", "none")
        size = f"{' x '.join(map(str, spec['image_size']))} px" if spec.get("kind", "image") in ("image", "spectrogram") else \
            f"{spec.get('kind', 'vector')} of shape {' x '.join(map(str, spec.get('shape') or []))}"
        lines.append(f"| input `{spec['modality']}` | {spec['channels']} channel(s) "
                     f"({', '.join(spec.get('channel_order') or []) or 'unnamed'}), {size}, "
                     f"{spec.get('layout', 'N x C x H x W')}; normalisation: {json.dumps(norm) if isinstance(norm, dict) else norm} |")
    names = sidecar.get("class_names") or []
    lines += [f"| output | logits over {len(names)} classes: {', '.join(map(str, names))} |",
              f"| method | `{sidecar['method']}` ({sidecar.get('scenario', '')}), options "
              f"`{json.dumps(sidecar.get('method_options') or {}, sort_keys=True)}` |",
              f"| teacher | {teacher} |",
              f"| network | {json.dumps(sidecar.get('arch'))} |",
              f"| seed, best epoch | {sidecar['seed']}, {sidecar.get('best_epoch')} (chosen on validation weighted F1) |",
              f"| validation / test weighted F1 | {_pct(sidecar.get('val_f1'))} / {_pct(f1)} |",
              f"| parameters | {_num(costs.get('params'), 1e6, 'M')} |",
              f"| forward FLOPs per sample | {_num(costs.get('flops'), 1e6, 'M')} |",
              f"| trial | {sidecar['trial_id']}, cmkd {sidecar.get('code_version', '?')} |", "",
              "## Intended use", "",
              f"Research: comparing knowledge-distillation methods on `{dataset}`. It classifies inputs made and "
              "normalised exactly as the facts above say; it is not meant for decisions about people or places, "
              "nor for data from another sensor, size or distribution without evaluating it there first.", "",
              "## Limits known from this benchmark", ""]
    lines += _limits(f1, cell, student, dataset)
    return "\n".join(lines) + "\n"


def _limits(f1: float | None, cell: SeedSpread | None, student: SeedSpread | None, dataset: str) -> list[str]:
    out = []
    if cell is not None:
        out.append(f"- This cell (same data, method, options and networks) gives weighted F1 {cell.text()}: "
                   f"this seed's {_pct(f1)} is one draw of it. Quote the interval, not the seed.")
    else:
        out.append("- Trained outside a benchmark folder (or its records are gone): no other seed to show how much "
                   "this number moves from seed to seed.")
    if student is not None:
        out.append(f"- STUDENT (the same network trained on this modality alone) gives {student.text()} in the same "
                   "column: the gain from distillation is the difference, and the benchmark's tables test it.")
    out += ["- Selected at its best validation epoch; the test split was never used to choose anything.",
            "- Float rounding differs across CPUs and GPUs: retraining elsewhere gives other digits, within the "
            "interval above."]
    if dataset == "synthetic":
        out.append("- The data are cmkd-bench's built-in synthetic images: the model says nothing about real sensors.")
    return out


def _yaml(obj: Any, indent: int = 0) -> str:
    """A small YAML writer for the model-index block (JSON scalars are valid YAML; no PyYAML needed)."""
    pad = "  " * indent
    if isinstance(obj, dict):
        out = ""
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out += f"{pad}{k}:\n{_yaml(v, indent + 1)}"
            else:
                out += f"{pad}{k}: {json.dumps(v)}\n"
        return out
    out = ""
    for item in obj:
        body = _yaml(item, indent + 1) if isinstance(item, (dict, list)) else f"{'  ' * (indent + 1)}{json.dumps(item)}\n"
        out += f"{pad}- {body.lstrip()}"
    return out


def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), 2)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * float(v):.2f}"


def _num(v: float | None, scale: float, unit: str) -> str:
    return "not measured" if v is None else f"{float(v) / scale:.3f} {unit}"


def write_cards(trial_folder: str | Path, exported: dict[str, str]) -> list[Path]:
    """``model_<key>.md`` beside each program ``cmkd export`` wrote for the trial (``exported``: key -> path)."""
    from cmkd.harness.engine.corrupt import read_json_file
    from cmkd.harness.engine.deploy import read_trial, sidecar_path
    from cmkd.harness.engine.io import write_text

    result, spec = read_trial(Path(trial_folder))
    bench = bench_of(Path(trial_folder))
    if spec.scenario in ("cross-modal", "multi-modal"):
        teacher = (f"{spec.teacher_arch}, trained on {'the rich modality' if spec.scenario == 'cross-modal' else 'every modality'}"
                   f" ({spec.scenario} scenario); teacher options {json.dumps(spec.teacher_options, sort_keys=True)}")
    else:
        teacher = "none: trained from the labels (and its own modalities) alone"
    written = []
    for key, model in exported.items():
        cell, student = spreads(bench, spec.trial_id(), key) if bench is not None else (None, None)
        text = model_card(read_json_file(sidecar_path(Path(model))), result.get("costs", {}).get(key, {}), teacher,
                          cell, student)
        path = card_path(Path(model))
        write_text(text, path)
        written.append(path)
    return written
