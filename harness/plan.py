"""The benchmark plan: config -> deduplicated trials in two stages.

Stage 1 holds everything without a teacher: ``student`` on every modality (on the rich modality it
is also the cross-modal TEACHER: one trial, referenced twice), ``teacher-mm``, DisCoM-KD (one joint
run serves Tables 1 and 2) and its ablations. Stage 2 holds the distilled students, each pointing
at its teacher's trial id: it runs only once that teacher has finished.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from cmkd.methods import get_method

from .bench_config import BenchConfig
from .config import TrialSpec
from .data import data_info, load_data
from .store import variant_of
from .teachers import teacher_spec

#: rough cost of one epoch relative to a student epoch (forward/backward passes per sample)
COST = {"student": 1.0, "teacher-mm": 2.0, "discomkd": 4.0, "mlkd": 2.5, "mlkd-discomkd-code": 1.3}
KD_COST = 1.3


@dataclass(frozen=True)
class PlannedTrial:
    spec: TrialSpec
    stage: int
    teacher_id: str | None = None

    @property
    def trial_id(self) -> str:
        return self.spec.trial_id()

    @property
    def name(self) -> str:
        s = self.spec
        parts = [s.dataset, s.method]
        v = variant_of(s)
        if v:
            parts.append(v)
        if s.modality:
            parts.append(s.modality)
        if s.scenario in ("cross-modal", "multi-modal"):
            parts.append("xm" if s.scenario == "cross-modal" else "mm")
        parts.append(f"s{s.seed}")
        return "-".join(parts)

    def cost(self) -> float:
        s = self.spec
        base = COST.get(s.method, KD_COST)
        if s.method == "discomkd":
            base = 2.0 * len(data_info(load_data(s.dataset, s.data_root, s.dataset_options)).channels)
        return base * s.train.epochs


def build_plan(cfg: BenchConfig) -> list[PlannedTrial]:
    trials: dict[str, PlannedTrial] = {}

    def add(spec: TrialSpec, stage: int, teacher: str | None = None) -> None:
        trials.setdefault(spec.trial_id(), PlannedTrial(spec, stage, teacher))

    for entry in cfg.datasets:
        data = load_data(entry.name, entry.root, entry.options)  # fails early on missing data
        info = data_info(data)
        content = data.fingerprint()  # trials are tied to the content planned on; workers check it
        mods = list(info.channels)
        for seed in cfg.seeds:
            def spec(method: str, modality: str | None = None, scenario: str = "single", **opts) -> TrialSpec:
                options = {**cfg.method_options.get(method, {}), **opts}
                return TrialSpec(dataset=entry.name, method=method, seed=seed, modality=modality, scenario=scenario,
                                 method_options=options, dataset_options=dict(entry.options), data_root=entry.root,
                                 train=cfg.train, data_fingerprint=content)

            scen = set(cfg.scenarios)
            if scen & {"cross-modal", "multi-modal"}:
                for m in mods:
                    add(spec("student", m), 1)
                if cfg.discomkd:
                    add(spec("discomkd"), 1)
            if "multi-modal" in scen:
                add(spec("teacher-mm"), 1)
            if "ablation" in scen:
                for a in cfg.ablations:
                    add(spec("discomkd", scenario="ablation", ablation=a), 1)
            for method in cfg.methods:
                for lskd in cfg.lskd:
                    targets = []
                    if "cross-modal" in scen:
                        targets += [("cross-modal", m) for m in mods if m != info.rich]
                    if "multi-modal" in scen:
                        targets += [("multi-modal", m) for m in mods]
                    for scenario, m in targets:
                        s = spec(method, m, scenario, lskd=lskd)
                        get_method(method).check(info, m, get_method(method).Options.from_dict(s.method_options, method))
                        t = teacher_spec(s, scenario, info)
                        t = t.replace(method_options=dict(cfg.method_options.get(t.method, {})))
                        add(s, 2, t.trial_id())
    plan = sorted(trials.values(), key=lambda p: (p.stage, p.spec.dataset, p.spec.seed, p.name))
    ids = {p.trial_id for p in plan}
    for p in plan:
        assert p.teacher_id is None or p.teacher_id in ids, f"teacher of {p.name} is not planned"
    return plan


def describe(plan: list[PlannedTrial], epoch_seconds: dict[str, float], gpus_per_trial: float) -> str:
    """The --dry-run text: trials per stage and method, trial-epochs, and a compute estimate."""
    lines = []
    for stage in (1, 2):
        part = [p for p in plan if p.stage == stage]
        counts = Counter(p.spec.method + (f" ({p.spec.scenario})" if p.spec.scenario != "single" else "") for p in part)
        title = "stage 1 (no teacher: students/teachers, DisCoM-KD)" if stage == 1 else "stage 2 (distilled students)"
        lines.append(f"{title}: {len(part)} trials")
        lines += [f"    {n:4d}  {k}" for k, n in sorted(counts.items())]
    epochs = sum(p.spec.train.epochs for p in plan)
    lines.append(f"total: {len(plan)} trials, {epochs} trial-epochs")
    seconds = sum(p.cost() * epoch_seconds[p.spec.dataset] for p in plan)
    per = ", ".join(f"{d} {s:.2f} s" for d, s in epoch_seconds.items())
    device = "GPU" if gpus_per_trial > 0 else "CPU"
    lines.append(f"estimate: {seconds / 3600:.2f} {device}-hours of trial time at one student epoch = {per} "
                 f"(method costs relative to a student epoch: DisCoM-KD 2 x modalities, teacher-mm 2, MLKD 2.5, other KD 1.3)")
    if gpus_per_trial > 0:
        lines.append(f"    = {seconds / 3600 * gpus_per_trial:.2f} GPU-hours at {gpus_per_trial} GPU per trial")
    return "\n".join(lines)
