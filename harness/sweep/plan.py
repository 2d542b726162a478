"""The benchmark plan: config -> deduplicated trials in two stages, read from what methods declare.

Stage 1 holds everything without a teacher: the cross-modal reference method on every modality (the
STUDENT rows; on the rich modality it is also the cross-modal TEACHER: one trial, referenced twice),
the multi-modal reference, and every standalone method (one joint run serves Tables 1 and 2) with its
ablations. Stage 2 holds the distilled methods, each pointing at its teacher's trial id: it runs only
once that teacher has finished. No method is known here by name.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, fields, replace

from cmkd.archs import DEFAULT_ARCH
from cmkd.harness.engine.data import data_info, load_data
from cmkd.harness.engine.folders import variant_of
from cmkd.harness.engine.spec import TrialSpec, data_key
from cmkd.harness.engine.teachers import teacher_spec
from cmkd.harness.engine.trial import check_networks
from cmkd.methods import DataInfo, get_method, teacher_method

from .bench_config import ArchPair, BenchConfig, DatasetEntry


@dataclass(frozen=True)
class PlannedTrial:
    spec: TrialSpec
    stage: int
    teacher_id: str | None = None
    entry: str = ""  # the data-set entry's label (two entries of one data set are two table columns)
    #: the teacher -> student pairs of the config this trial serves (one trial may serve several: a resnet18
    #: STUDENT row is that of every pair with a resnet18 student)
    pairs: tuple[str, ...] = ()

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
        if s.arch != DEFAULT_ARCH:
            parts.append(s.arch.replace(",", "+"))
        if s.teacher_arch != DEFAULT_ARCH:
            parts.append("from-" + s.teacher_arch.replace(",", "+"))
        parts.append(f"s{s.seed}")
        return "-".join(parts)

    @property
    def data_key(self) -> str:
        """The data-set entry's key (``name`` or ``name:label``), as in the results and tables."""
        return data_key(self.spec.dataset, self.entry)

    def cost(self, info=None) -> float:
        """Trial-epochs in student epochs (the method's declared relative cost)."""
        s = self.spec
        info = info or data_info(load_data(s.dataset, s.data_root, s.dataset_options), s.train.width)
        return get_method(s.method).epoch_cost(info) * s.train.epochs * network_cost(info, s.arch)


def network_cost(info: DataInfo, arch: str) -> float:
    """The trial's networks' counted forward FLOPs (mean over its modalities) relative to the default network
    (resnet18 at the trial's width): what scales a method's declared epoch cost to another architecture."""
    from cmkd.archs.choice import ArchChoice

    choice = ArchChoice.parse(arch)
    if choice.is_default:
        return 1.0
    from cmkd.methods.backbones import KIND_DEFAULT, arch_name

    named = replace(info, arch=str(choice))
    ratios = []
    for m, c in info.channels.items():  # against the kind's default network (resnet18 for images, mlp for vectors)
        size = info.sample(m).image_size
        ratios.append(_flops(arch_name(named, m), c, size, info.width)
                      / _flops(KIND_DEFAULT["image" if size else "vector"], c, size, info.width))
    return sum(ratios) / len(ratios)


@functools.lru_cache(maxsize=256)
def _flops(name: str, channels: int, size: tuple[int, int], width: int) -> int:
    from cmkd.archs import get_arch
    from cmkd.archs.cost import count

    cls = get_arch(name)
    shape = (channels, *size) if size is not None else (channels,)
    return max(1, count(lambda: cls.build(channels, size, width if cls.takes_width else 64), shape).flops)


def costs(plan: list[PlannedTrial], infos: dict[str, "EntryInfo"] | None = None) -> dict[str, float]:
    """Every trial's :meth:`PlannedTrial.cost`, loading each data-set entry once (or from ``infos``)."""
    known: dict[str, object] = {k: e.info for k, e in (infos or {}).items()}
    out = {}
    for p in plan:
        if p.data_key not in known:
            s = p.spec
            known[p.data_key] = data_info(load_data(s.dataset, s.data_root, s.dataset_options), s.train.width)
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
    from cmkd.harness.engine.data import default_root

    out = {}
    for entry in cfg.datasets:
        if declared and entry.root is None:  # a root given explicitly must exist, dry run or not
            adapter = get_dataset(entry.name, root=default_root(entry.name), **entry.options)
            shape = adapter.declared_shape()
            if not adapter.found() and shape is not None:
                n, shapes = shape
                info = declared_info(entry.name, shapes, adapter.kinds, len(adapter.class_names), adapter.rich,
                                     cfg.train.width)
                out[entry.key] = EntryInfo(info, "", n, "declared")
                continue
        data = load_data(entry.name, entry.root, entry.options)
        out[entry.key] = EntryInfo(data_info(data, cfg.train.width), data.fingerprint(), data.n, "data")
    return out


def declared_info(name: str, shapes: dict[str, tuple[int, ...]], kinds: dict[str, str], n_classes: int, rich: str,
                  width: int) -> DataInfo:
    """The :class:`DataInfo` of a data set not on disk, from its published per-sample shapes."""
    from cmkd.datasets.kinds import SampleShape, infer_kind

    samples = {m: SampleShape(kinds.get(m) or infer_kind(len(s) + 1), tuple(s)) for m, s in shapes.items()}
    return DataInfo(name, {m: s.channels for m, s in samples.items()},
                    {m: s.image_size for m, s in samples.items() if s.image_size is not None}, n_classes, rich, width,
                    kinds={m: s.kind for m, s in samples.items()}, shapes={m: s.shape for m, s in samples.items()})


def _has_option(cls, name: str) -> bool:
    return name in {f.name for f in fields(cls.Options)}


def build_plan(cfg: BenchConfig, infos: dict[str, EntryInfo] | None = None) -> list[PlannedTrial]:
    """The deduplicated trials of ``cfg``; ``infos`` (a dry run's, possibly from declared sizes) instead of
    loading each entry's data."""
    infos = infos or entry_infos(cfg)
    trials: dict[str, PlannedTrial] = {}
    checked: set = set()
    for entry in cfg.datasets:
        for seed in cfg.seeds:
            for pair in cfg.pairs:
                planner = EntrySeedPlanner(cfg, entry, infos[entry.key], seed, pair, checked)
                for p in planner.references() + [p for name in cfg.methods for p in planner.method(name)]:
                    known = trials.setdefault(p.trial_id, p)
                    if pair.label not in known.pairs:
                        trials[p.trial_id] = replace(known, pairs=(*known.pairs, pair.label))
    plan = sorted(trials.values(), key=lambda p: (p.stage, p.spec.dataset, p.entry, p.spec.seed, p.name))
    ids = {p.trial_id for p in plan}
    for p in plan:
        assert p.teacher_id is None or p.teacher_id in ids, f"teacher of {p.name} is not planned"
    return plan


class EntrySeedPlanner:
    """The trials of one data-set entry, seed and teacher -> student pair, one helper per method role. The
    pair's student network is every trial's own (the STUDENT rows, the distilled and standalone methods); its
    teacher network, the teachers'."""

    def __init__(self, cfg: BenchConfig, entry: DatasetEntry, info: EntryInfo, seed: int,
                 pair: ArchPair = ArchPair(), checked: set | None = None) -> None:
        self.cfg, self.entry, self.seed = cfg, entry, seed
        #: the networks of this entry's trials: the pair's, or the entry's own arch where the pairs are the default
        self.pair = ArchPair(entry.arch, entry.arch) if entry.arch and pair == ArchPair() else pair
        self.checked = checked if checked is not None else set()  # kinds of trial whose networks were checked
        self.info = info.info
        self.content = info.fingerprint  # trials are tied to the content planned on; workers check it
        self.scenarios = set(cfg.scenarios)
        self.tables_1_2 = bool(self.scenarios & {"cross-modal", "multi-modal"})

    def spec(self, method: str, modality: str | None = None, scenario: str = "single", arch: str | None = None,
             **opts) -> TrialSpec:
        options = {**self.cfg.method_options.get(method, {}), **opts}
        e = self.entry
        teacher = {}
        if scenario in ("cross-modal", "multi-modal"):  # a distilled trial names its teacher's network and options
            teacher = {"teacher_arch": self.pair.teacher,
                       "teacher_options": dict(self.cfg.method_options.get(teacher_method(scenario).name, {}))}
            teacher["teacher_pretrained"] = self.cfg.pretrained.get(self.pair.teacher, "")
        arch = arch or self.pair.student
        return TrialSpec(dataset=e.name, method=method, seed=self.seed, modality=modality, scenario=scenario,
                         method_options=options, dataset_options=dict(e.options), data_root=e.root,
                         train=self.cfg.train, data_fingerprint=self.content, arch=arch,
                         pretrained=self.cfg.pretrained.get(arch, ""), **teacher)

    def trial(self, spec: TrialSpec, stage: int = 1, teacher: str | None = None) -> PlannedTrial:
        """The planned trial, its networks checked against the data before any compute (once per kind of
        trial: the seeds repeat them)."""
        kind = (self.entry.key, spec.method, spec.modality, spec.scenario, spec.arch, spec.teacher_arch,
                spec.pretrained_hash, spec.teacher_pretrained_hash)
        if kind not in self.checked:
            cls, info = get_method(spec.method), replace(self.info, arch=spec.arch, teacher_arch=spec.teacher_arch)
            check_networks(cls, info, spec)
            cls.check(info, spec.modality, spec.options())
            cls.check_epochs(spec.train.epochs)
            self.checked.add(kind)
        return PlannedTrial(spec, stage, teacher, self.entry.label)

    def per_modality(self, cls) -> list[str | None]:
        return list(self.info.channels) if cls.single_modality else [None]

    def references(self) -> list[PlannedTrial]:
        """The STUDENT rows (the cross-modal reference on every modality, on the rich one also the cross-modal
        TEACHER) and the multi-modal TEACHER, as the scenarios need them."""
        out = []
        cross, teacher = teacher_method("cross-modal").name, self.pair.teacher
        if self.tables_1_2:
            out += [self.trial(self.spec(cross, m)) for m in self.info.channels]
            if "cross-modal" in self.scenarios:  # the pair's teacher on the rich modality (the same trial when equal)
                out.append(self.trial(self.spec(cross, self.info.rich, arch=teacher)))
        if "multi-modal" in self.scenarios:
            out.append(self.trial(self.spec(teacher_method("multi-modal").name, arch=teacher)))
        return out

    def method(self, name: str) -> list[PlannedTrial]:
        cls = get_method(name)
        return {"reference": self.reference, "standalone": self.standalone, "distilled": self.distilled}[cls.role()](cls)

    def reference(self, cls) -> list[PlannedTrial]:
        return [self.trial(self.spec(cls.name, m)) for m in self.per_modality(cls)]

    def standalone(self, cls) -> list[PlannedTrial]:
        """One joint run for Tables 1-2, and one per selected ablation it declares."""
        out = self.reference(cls) if self.tables_1_2 else []
        if "ablation" in self.scenarios:
            out += [self.trial(self.spec(cls.name, m, scenario="ablation", ablation=a))
                    for a in self.cfg.ablations if a in cls.ablations for m in self.per_modality(cls)]
        return out

    def distilled(self, cls) -> list[PlannedTrial]:
        """Every scenario it supports, every LSKD setting if it has the switch; each points at its teacher."""
        lskd = [{"lskd": v} for v in self.cfg.lskd] if _has_option(cls, "lskd") else [{}]
        targets = []
        if "cross-modal" in self.scenarios and "cross-modal" in cls.teacher_kinds:
            targets += [("cross-modal", m) for m in self.info.channels if m != self.info.rich]
        if "multi-modal" in self.scenarios and "multi-modal" in cls.teacher_kinds:
            targets += [("multi-modal", m) for m in self.info.channels]
        out = []
        for extra in lskd:
            for scenario, m in targets:
                s = self.spec(cls.name, m, scenario, **extra)
                out.append(self.trial(s, 2, teacher_spec(s, scenario, self.info).trial_id()))
        return out


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
