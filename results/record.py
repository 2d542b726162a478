"""The one record of a benchmark trial's result: written once into the results store, read everywhere.

A ``ResultRecord`` is the trial's identity in the benchmark (written by the sweep's job from the plan),
its outcome (copied from the engine's ``TrialResult`` once: :data:`OUTCOME`), and where and how often it
ran. Its own methods turn it into what each reader needs: the JSON file (``to_dict``/``from_dict``), the
Parquet rows (``output_rows``, ``history_rows``) and the MLflow tags (``mlflow_tags``); the tables are
built from those rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cmkd.archs import DEFAULT_ARCH

#: what a finished record copies from the engine's ``TrialResult`` (its field names there and here)
OUTCOME = ("outputs", "epochs_run", "wall_time_s", "images_per_s", "device", "out_dir", "resumed_from", "threads",
           "train_time_s", "checkpoint_s", "history", "costs", "diverged", "loss_rose")
#: the statuses a rerun never changes: the trial ran to its end (``diverged``: a non-finite loss ended it,
#: an outcome of the method and its settings, not a fault a retry would mend)
FINAL = ("finished", "diverged")
#: test F1 per output under each model-selection rule: at the best validation epoch (the protocol,
#: ``test_f1``), at the last epoch, and the best over epochs (selected on test: an upper bound, never a result)
SELECTIONS = {"best-val": "test_f1", "last": "test_f1_last", "oracle": "test_f1_oracle"}
#: what each deployed model costs (``cmkd.archs.cost``): counted parameters and FLOPs per sample, latency at
#: batch 1 and images/s at batch 128 measured on the run's device
COST_COLUMNS = ["params", "flops", "latency_ms", "deploy_images_per_s"]
#: the scores beside test F1, at the same (best validation) epoch: accuracy, average per-class accuracy, Cohen's
#: kappa, as fractions (``cmkd.harness.engine.metrics.scores``; missing in records made before they were kept)
SCORE_COLUMNS = ["test_accuracy", "test_avg_accuracy", "test_kappa"]
#: the columns of ``results.parquet`` before the ``opt.<name>`` columns, in order
ROW_COLUMNS = ["dataset", "entry", "scenario", "method", "variant", "lskd", "ablation", "modality", "seed", "arch",
               "teacher_arch", "pairs", "test_f1", "test_f1_last", "test_f1_oracle", *SCORE_COLUMNS, "val_f1", "best_epoch", "oracle_epoch",
               "epochs_run", "wall_time_s", "images_per_s", "device", *COST_COLUMNS, "config_hash", "code_version", "trial_id", "stage", "status", "teacher_id",
               "mlflow_run_id", "error", "attempts", "node_id", "host"]
#: the identity columns that lead ``history.parquet``
HISTORY_COLUMNS = ["trial_id", "dataset", "entry", "scenario", "method", "variant", "lskd", "ablation", "seed",
                   "output", "epoch", "seconds", "val_f1", "loss"]


@dataclass
class ResultRecord:
    """One trial of a benchmark: identity, status, outcome, where it ran."""

    # ---- identity (the plan's) ----
    trial_id: str
    name: str = ""
    stage: int = 1
    dataset: str = ""
    entry: str = ""  # the data-set entry's label ("" when the data set has one entry)
    scenario: str = "single"
    method: str = ""
    variant: str = ""
    modality: str | None = None
    seed: int = 0
    #: the network trained (for a per-modality choice, the output's own is in ``arch`` of its row) and its teacher's
    arch: str = DEFAULT_ARCH
    teacher_arch: str = DEFAULT_ARCH
    #: the benchmark's teacher -> student pairs this trial serves ("teacher->student"; empty: the paper's)
    pairs: list[str] = field(default_factory=list)
    teacher_id: str | None = None
    config_hash: str = ""
    code_version: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    #: every option of the method, defaults included (what produced the numbers, not only what was set)
    options: dict[str, Any] = field(default_factory=dict)
    # ---- status ----
    status: str = "pending"  # finished or diverged (final: a rerun never overwrites them), failed or skipped once filed
    error: str | None = None  # failed: the error; skipped: the reason
    attempts: int = 0
    mlflow_run_id: str | None = None
    node_id: str = ""  # the Ray node and host of the last attempt
    host: str = ""
    # ---- outcome (finished: copied from the engine's TrialResult, see OUTCOME) ----
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # output -> test_f1, val_f1, best_epoch, ...
    epochs_run: int | None = None
    wall_time_s: float | None = None
    images_per_s: float | None = None
    device: str | None = None
    out_dir: str | None = None
    resumed_from: list[int] = field(default_factory=list)
    threads: int | None = None
    train_time_s: float | None = None
    checkpoint_s: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    costs: dict[str, dict[str, float]] = field(default_factory=dict)  # output -> params, flops, latency_ms, ...
    diverged: dict[str, Any] | None = None  # the epoch, loss term and value of a non-finite loss (status diverged)
    loss_rose: bool = False  # the last epoch's training loss ended above the first's
    started_at: float | None = None  # when the worker started and ended the job (fixed cost = job - training)
    ended_at: float | None = None
    written_at: str = ""

    # ---- the file ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ResultRecord":
        """A record from its JSON form; keys it does not know are ignored (a record of a later version)."""
        rec = cls(**{k: v for k, v in d.items() if k in _FIELDS})
        if not isinstance(d.get("options"), dict):  # written before records kept the resolved options
            rec.options = dict((rec.spec or {}).get("method_options") or {})
        return rec

    # ---- outcomes -----------------------------------------------------------------------------------
    def finished(self, result: Any, started_at: float, ended_at: float) -> "ResultRecord":
        """This record finished with the engine's ``TrialResult`` (its per-output confusion matrices stay in
        the trial folder's ``result.json``)."""
        outcome = {k: getattr(result, k) for k in OUTCOME}
        outcome["outputs"] = {k: {kk: vv for kk, vv in v.items() if kk != "confusion"} for k, v in result.outputs.items()}
        d = result.diverged
        status, error = ("diverged", f"loss {d['term']} not finite ({d['value']}) at epoch {d['epoch']}") if d else ("finished", None)
        return self._with(status=status, error=error, started_at=started_at, ended_at=ended_at, **outcome)

    def failed(self, error: str) -> "ResultRecord":
        return self._with(status="failed", error=error[:2000])

    def skipped(self, reason: str) -> "ResultRecord":
        return self._with(status="skipped", error=reason)

    def _with(self, **changes: Any) -> "ResultRecord":
        return ResultRecord(**{**asdict(self), **changes})

    # ---- what readers need --------------------------------------------------------------------------
    @property
    def lskd(self) -> bool | None:
        """The method's LSKD switch (None: the method has none)."""
        return self.options.get("lskd")

    @property
    def ablation(self) -> str:
        return self.options.get("ablation") or ""

    def output_rows(self) -> list[dict[str, Any]]:
        """Rows of ``results.parquet``: one per evaluated output of a finished trial (one row with its
        modality otherwise), the :data:`ROW_COLUMNS`, then ``opt.<name>`` per resolved option."""
        base = {k: getattr(self, k) for k in ROW_COLUMNS if k in _FIELDS and k not in ("modality", "pairs")}
        base["pairs"] = ";".join(self.pairs)
        base.update(lskd=self.lskd, ablation=self.ablation, **{f"opt.{k}": v for k, v in sorted(self.options.items())})
        if self.status != "finished" or not self.outputs:
            return [{**base, "modality": self.modality}]
        return [{**base, "modality": key, "test_f1": out["test_f1"], "val_f1": out["val_f1"],
                 "best_epoch": out["best_epoch"], "test_f1_last": out.get("last_test_f1"),
                 "test_f1_oracle": out.get("oracle_test_f1"), "oracle_epoch": out.get("oracle_epoch"),
                 **{c: out.get(c) for c in SCORE_COLUMNS},
                 **{c: self.costs.get(key, {}).get(c) for c in COST_COLUMNS}}
                for key, out in self.outputs.items()]

    def history_rows(self) -> list[dict[str, Any]]:
        """Rows of ``history.parquet``: one per (epoch, output) of a finished trial: the epoch's training
        losses (``loss``, ``loss.<term>``), the output's validation F1, seconds of training, and the method's
        per-epoch extras (``extra.<name>``, e.g. CTKD's temperature)."""
        if self.status != "finished":
            return []
        ident = {k: getattr(self, k) for k in HISTORY_COLUMNS[:9]}
        rows = []
        for h in self.history:
            losses, extra = {}, {}
            for k, v in h.items():
                if k.startswith("train/"):
                    name = k[len("train/"):]
                    losses["loss" if name == "loss" else f"loss.{name}"] = v
                elif k not in ("epoch", "seconds") and not k.startswith(("val_f1/", "test_f1/")):
                    extra[f"extra.{k}"] = v
            for key in (k[len("val_f1/"):] for k in h if k.startswith("val_f1/")):
                rows.append({**ident, "output": key, "epoch": h["epoch"], "seconds": h.get("seconds"),
                             "val_f1": h[f"val_f1/{key}"], **losses, **extra})
        return rows

    def mlflow_tags(self, bench: str) -> dict[str, str]:
        """The tags of the trial's MLflow run (what ``cmkd tables --mlflow`` reads back)."""
        return {"bench": bench, "stage": str(self.stage), "dataset": self.dataset, "entry": self.entry,
                "scenario": self.scenario, "method": self.method, "variant": self.variant, "arch": self.arch,
                "teacher_arch": self.teacher_arch, "pairs": ";".join(self.pairs),
                "modality": str(self.modality or "all"), "seed": str(self.seed), "trial_id": self.trial_id,
                "teacher_id": str(self.teacher_id or ""), "config_hash": self.config_hash,
                "code_version": self.code_version}


_FIELDS = {f.name for f in fields(ResultRecord)}

