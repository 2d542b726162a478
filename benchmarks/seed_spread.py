"""Where a seed's KD-minus-STUDENT spread comes from: the training, or the 420 test samples a cell is scored on.

The default benchmark's ``specific`` regime, its own train config: for each seed the rgb teacher, the depth
STUDENT and the distilled depth students are trained once (``cmkd.harness.engine.trial.run_trial``), then each
kept best-validation model is scored twice: on its own test part (the recorded test F1) and, through its
exported program, on a fresh test set of the same distribution (the same generator and class codes, samples
the trials never saw). If the per-seed spread of the differences shrinks on the large set, the test sample
is the noise and a larger test part would buy reproducible marks; if it does not, only more seeds do.

    python benchmarks/seed_spread.py [--seeds 8] [--fresh 8000] [--entry specific] [--methods kdv1,ctkd]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

from cmkd.datasets import get_dataset
from cmkd.harness.cli.predict import check_and_normalise, load_exported, predict_logits, read_sidecar
from cmkd.harness.engine.deploy import export_trial
from cmkd.harness.engine.spec import TrialSpec
from cmkd.harness.engine.trial import run_trial
from cmkd.harness.sweep.bench_config import load_config


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--fresh", type=int, default=8000, help="samples of the fresh test set")
    ap.add_argument("--entry", default="specific", help="the quick profile's data-set entry (label)")
    ap.add_argument("--methods", default="kdv1,ctkd")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config("quick")
    entry = next(e for e in cfg.datasets if e.label == args.entry)
    n = int(entry.options["n_samples"])
    # the same generator and seed: the same class codes; samples past the first n are ones no trial saw
    big = get_dataset(entry.name, **{**entry.options, "n_samples": n + args.fresh}).load()
    x, y = big.modalities["depth"][n:], big.labels[n:]
    methods = ["student", *args.methods.split(",")]
    scores: dict[str, dict[str, list[float]]] = {"own test part": {}, f"fresh {args.fresh}": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            def spec(method: str, modality: str, scenario: str = "single") -> TrialSpec:
                return TrialSpec(dataset=entry.name, method=method, seed=seed, modality=modality, scenario=scenario,
                                 dataset_options=dict(entry.options), train=cfg.train)

            run_trial(spec("student", "rgb"), runs_root=tmp)
            for m in methods:
                result = run_trial(spec(m, "depth", "single" if m == "student" else "cross-modal"), runs_root=tmp)
                model = Path(export_trial(result.out_dir, ["depth"], out=Path(tmp) / f"x-{m}-{seed}")["depth"])
                side = read_sidecar(model)["inputs"][0]
                pred = predict_logits(load_exported(model), [check_and_normalise(x, side, "fresh", False)]).argmax(1)
                scores["own test part"].setdefault(m, []).append(100 * result.outputs["depth"]["test_f1"])
                scores[f"fresh {args.fresh}"].setdefault(m, []).append(100 * f1_score(y, pred, average="weighted"))
    print(f"{args.entry} regime, {args.seeds} seeds, depth students, quick profile's train config; "
          f"per-seed difference to STUDENT, mean and sample sd (points of weighted F1)")
    for where, by in scores.items():
        for m in methods[1:]:
            d = np.array(by[m]) - np.array(by["student"])
            print(f"  {where:<16} {m:<8} mean {d.mean():+6.2f}  sd {d.std(ddof=1):5.2f}")


if __name__ == "__main__":
    main()
