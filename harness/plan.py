"""The benchmark plan: config -> deduplicated trials in two stages, read from what methods declare.

Stage 1 holds everything without a teacher: the cross-modal reference method on every modality (the
STUDENT rows; on the rich modality it is also the cross-modal TEACHER: one trial, referenced twice),
the multi-modal reference, and every standalone method (one joint run serves Tables 1 and 2) with its
ablations. Stage 2 holds the distilled methods, each pointing at its teacher's trial id: it runs only
once that teacher has finished. No method is known here by name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields

from cmkd.methods import DataInfo, get_method, teacher_method

from .bench_config import BenchConfig
from .config import TrialSpec, data_key
from .data import data_info, load_data
from .store import variant_of
from .teachers import teacher_spec


@dataclass(frozen=True)
class PlannedTrial:
    spec: TrialSpec
    stage: int
    teacher_id: str | None = None
    entry: str = ""  # the data-set entry's label (two entries of one data set are two table columns)

    @property
    def trial_id(self) -> str:
        return self.spec.trial_id()

    @property
    def name(self) -> str:
        s = self.spec
        parts = [f"{s.dataset}-{self.entry}" if self.entry else s.dataset, s.method]
        v = variant_of(s)
        if v:
            parts.append(v)
        if s.modality:
            parts.append(s.modality)
        if s.scenario in ("cross-modal", "multi-modal"):
            parts.append("xm" if s.scenario == "cross-modal" else "mm")
        parts.append(f"s{s.seed}")
        return "-".join(parts)

    @property
    def data_key(self) -> str:
        """The data-set entry's key (``name`` or ``name:label``), as in the results and tables."""
        return data_key(self.spec.dataset, self.entry)

    def cost(self, info=None) -> float:
        """Trial-epochs in student epochs (the method's declared relative cost)."""
        s = self.spec
        info = info or data_info(load_data(s.dataset, s.data_root, s.dataset_options))
        return get_method(s.method).epoch_cost(info) * s.train.epochs


def costs(plan: list[PlannedTrial], infos: dict[str, "EntryInfo"] | None = None) -> dict[str, float]:
    """Every trial's :meth:`PlannedTrial.cost`, loading each data-set entry once (or from ``infos``)."""
    known: dict[str, object] = {k: e.info for k, e in (infos or {}).items()}
    out = {}
    for p in plan:
        if p.data_key not in known:
            s = p.spec
            known[p.data_key] = data_info(load_data(s.dataset, s.data_root, s.dataset_options))
        out[p.trial_id] = p.cost(known[p.data_key])
    return out


@dataclass(frozen=True)
class EntryInfo:
    """What the plan knows of one data-set entry: the method-facing description, the content fingerprint
    ("" when planned from declared sizes), the sample count, and where the sizes came from."""

    info: DataInfo
    fingerprint: str
    n_samples: int
    source: str  # "data" or "declared"


def entry_infos(cfg: BenchConfig, declared: bool = False) -> dict[str, EntryInfo]:
    """Each entry's :class:`EntryInfo` from its data (a missing data folder fails here, naming the fix), or,
    with ``declared`` and no data under the default root (no ``root`` given), from the data set's published
    sizes."""
    from cmkd.datasets import get_dataset

    from .data import default_root

    out = {}
    for entry in cfg.datasets:
        if declared and entry.root is None:  # a root given explicitly must exist, dry run or not
            adapter = get_dataset(entry.name, root=default_root(entry.name), **entry.options)
            shape = adapter.declared_shape()
            if not adapter.found() and shape is not None:
                n, sizes = shape
                chans = adapter.modality_channels()
                out[entry.key] = EntryInfo(DataInfo(entry.name, chans, sizes, len(adapter.class_names), adapter.rich),
                                           "", n, "declared")
                continue
        data = load_data(entry.name, entry.root, entry.options)
        out[entry.key] = EntryInfo(data_info(data), data.fingerprint(), data.n, "data")
    return out


def _has_option(cls, name: str) -> bool:
    return name in {f.name for f in fields(cls.Options)}


def build_plan(cfg: BenchConfig, infos: dict[str, EntryInfo] | None = None) -> list[PlannedTrial]:
    """The deduplicated trials of ``cfg``; ``infos`` (a dry run's, possibly from declared sizes) instead of
    loading each entry's data."""
    trials: dict[str, PlannedTrial] = {}
    infos = infos or entry_infos(cfg)

    def add(spec: TrialSpec, stage: int, teacher: str | None = None) -> None:
        trials.setdefault(spec.trial_id(), PlannedTrial(spec, stage, teacher, label))

    scen = set(cfg.scenarios)
    reference = {kind: teacher_method(kind) for kind in ("cross-modal", "multi-modal")}
    for entry in cfg.datasets:
        label = entry.label
        info = infos[entry.key].info
        content = infos[entry.key].fingerprint  # trials are tied to the content planned on; workers check it
        mods = list(info.channels)
        for seed in cfg.seeds:
            def spec(method: str, modality: str | None = None, scenario: str = "single", **opts) -> TrialSpec:
                options = {**cfg.method_options.get(method, {}), **opts}
                return TrialSpec(dataset=entry.name, method=method, seed=seed, modality=modality, scenario=scenario,
                                 method_options=options, dataset_options=dict(entry.options), data_root=entry.root,
                                 train=cfg.train, data_fingerprint=content)

            def per_modality(cls) -> list[str | None]:
                return list(mods) if cls.single_modality else [None]

            if scen & {"cross-modal", "multi-modal"}:  # the STUDENT rows (and the cross-modal teacher)
                for m in mods:
                    add(spec(reference["cross-modal"].name, m), 1)
            if "multi-modal" in scen:
                add(spec(reference["multi-modal"].name), 1)
            for name in cfg.methods:
                cls = get_method(name)
                if cls.role() == "reference":
                    for m in per_modality(cls):
                        add(spec(name, m), 1)
                elif cls.role() == "standalone":
                    if scen & {"cross-modal", "multi-modal"}:
                        for m in per_modality(cls):
                            add(spec(name, m), 1)
                    if "ablation" in scen:
                        for a in (a for a in cfg.ablations if a in cls.ablations):
                            for m in per_modality(cls):
                                add(spec(name, m, scenario="ablation", ablation=a), 1)
                else:  # distilled: every scenario it supports, every LSKD setting if it has the switch
                    lskd = [{"lskd": v} for v in cfg.lskd] if _has_option(cls, "lskd") else [{}]
                    targets = []
                    if "cross-modal" in scen and "cross-modal" in cls.teacher_kinds:
                        targets += [("cross-modal", m) for m in mods if m != info.rich]
                    if "multi-modal" in scen and "multi-modal" in cls.teacher_kinds:
                        targets += [("multi-modal", m) for m in mods]
                    for extra in lskd:
                        for scenario, m in targets:
                            s = spec(name, m, scenario, **extra)
                            cls.check(info, m, cls.Options.from_dict(s.method_options, name))
                            t = teacher_spec(s, scenario, info)
                            t = t.replace(method_options=dict(cfg.method_options.get(t.method, {})))
                            add(s, 2, t.trial_id())
    plan = sorted(trials.values(), key=lambda p: (p.stage, p.spec.dataset, p.entry, p.spec.seed, p.name))
    ids = {p.trial_id for p in plan}
    for p in plan:
        assert p.teacher_id is None or p.teacher_id in ids, f"teacher of {p.name} is not planned"
    return plan


def describe(plan: list[PlannedTrial]) -> str:
    """Trials per stage and method, and the total trial-epochs (the first half of --dry-run)."""
    lines = []
    for stage in (1, 2):
        part = [p for p in plan if p.stage == stage]
        counts = Counter(p.spec.method + (f" ({p.spec.scenario})" if p.spec.scenario != "single" else "") for p in part)
        title = "stage 1 (no teacher: reference and standalone methods)" if stage == 1 else "stage 2 (distilled students)"
        lines.append(f"{title}: {len(part)} trials")
        lines += [f"    {n:4d}  {k}" for k, n in sorted(counts.items())]
    epochs = sum(p.spec.train.epochs for p in plan)
    lines.append(f"total: {len(plan)} trials, {epochs} trial-epochs")
    return "\n".join(lines)
