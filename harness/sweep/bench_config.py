"""The benchmark configuration: typed, validated, loadable from TOML; built-in profiles.

``cmkd bench --profile quick --set train.epochs=4 --set seeds=[0,1]``: a profile, then a TOML file
(``--config``), then ``--set`` overrides, each key checked (with the nearest valid name on a typo).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from cmkd.archs import DEFAULT_ARCH
from cmkd.errors import UserError, check_fields, check_value, nearest
from cmkd.harness.engine.spec import TrainConfig, data_key
from cmkd.plugins import load_plugins

#: the built-in profiles: one TOML file each in ``profiles/`` (the default first)
PROFILES = tuple(sorted((f.name[:-5] for f in resources.files("cmkd.harness.sweep").joinpath("profiles").iterdir()
                         if f.name.endswith(".toml")), key=lambda n: (n != "quick", n)))
SCENARIOS = ("cross-modal", "multi-modal", "ablation")


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: tells apart two entries of one data set (other options: two table columns), e.g. "shared"
    label: str = ""
    #: this entry's network (an ArchChoice text), teacher and student alike, where the benchmark's pairs are the
    #: default: a data set whose own papers use another backbone (MST-Distill's LeNet-5 on AV-MNIST). "": the pairs'
    arch: str = ""

    def __post_init__(self) -> None:
        if self.arch:
            from cmkd.archs.choice import ArchChoice

            object.__setattr__(self, "arch", str(ArchChoice.parse(self.arch, "a datasets entry's arch")))

    @property
    def key(self) -> str:
        """The entry's column key in the results and tables: ``name`` or ``name:label``."""
        return data_key(self.name, self.label)


@dataclass(frozen=True)
class ArchPair:
    """A teacher -> student pair of networks (``cmkd.archs.choice.ArchChoice`` texts), swept like seeds."""

    teacher: str = DEFAULT_ARCH
    student: str = DEFAULT_ARCH

    def __post_init__(self) -> None:
        from cmkd.archs.choice import ArchChoice

        for role in fields(self):  # each role's text in its canonical form, unknown names refused
            object.__setattr__(self, role.name, str(ArchChoice.parse(getattr(self, role.name), f"a pairs entry's {role.name}")))

    @property
    def label(self) -> str:
        return f"{self.teacher}->{self.student}"


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # fractions such as 0.25 pack several trials on one GPU

    def __post_init__(self) -> None:
        check_fields(self, "resources.")


@dataclass(frozen=True)
class Adaptive:
    """A second stage of seeds for the Table 1 cells still undecided at the first ones (``harness/sweep/adaptive.py``).

    After every trial of ``seeds`` has ended, each distilled cell's paired test against STUDENT is corrected
    with Holm within its column, exactly as the table does it. A cell whose corrected p lies in ``band``
    (``[low, high)``; ``high = 1`` includes 1) is neither clearly significant nor clearly not: it, its column's STUDENT and their
    teachers also run these ``seeds``, and the table then tests it on all of its seeds. Cells outside the band
    keep the first seeds. ``seeds`` empty: no second stage."""

    seeds: tuple[int, ...] = ()
    band: tuple[float, float] = (0.005, 0.5)

    def __post_init__(self) -> None:
        from cmkd.datasets.splits import MAX_REPETITION

        if not isinstance(self.seeds, (list, tuple)) or not isinstance(self.band, (list, tuple)):
            raise UserError("adaptive.seeds and adaptive.band are lists, e.g. --set \"adaptive.seeds=[10, 11]\"")
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "band", tuple(self.band))
        for v in self.seeds:
            check_value("every entry of adaptive.seeds", v, int)
        if any(not 0 <= s <= MAX_REPETITION for s in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"adaptive.seeds must be distinct integers in 0..{MAX_REPETITION}, got {list(self.seeds)}")
        for v in self.band:
            check_value("every entry of adaptive.band", v, float)
        if len(self.band) != 2 or not 0 < self.band[0] < self.band[1] <= 1:
            raise UserError(f"adaptive.band is [low, high] with 0 < low < high <= 1 (Holm p at the first seeds), "
                            f"got {list(self.band)}")


@dataclass(frozen=True)
class BenchConfig:
    name: str = "quick"
    datasets: tuple[DatasetEntry, ...] = (DatasetEntry("synthetic"),)
    seeds: tuple[int, ...] = (0, 1, 2)
    scenarios: tuple[str, ...] = SCENARIOS
    #: registered methods to compare (the profiles list the paper's); the reference methods that teach
    #: and give the STUDENT rows are always planned
    methods: tuple[str, ...] = ()
    lskd: tuple[bool, ...] = (False, True)  # for methods with an lskd switch
    ablations: tuple[str, ...] = ()  # each run by the listed methods that declare it
    #: modules (dotted names or .py paths) imported before the plan and in every worker: methods and
    #: data sets registered outside this package
    plugins: tuple[str, ...] = ()
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method, e.g. {ctkd = {temp_lr = 0.01}}
    #: teacher -> student networks, each pair a full sweep (its own STUDENT rows, teachers and students); the
    #: paper's is resnet18 -> resnet18
    pairs: tuple[ArchPair, ...] = (ArchPair(),)
    #: initial weights per architecture (a local state-dict file, or "hub": the torch hub cache; never
    #: downloaded): every trial whose network is that architecture starts from them, teachers and students alike
    pretrained: dict[str, str] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    resources: Resources = field(default_factory=Resources)
    #: more seeds for the Table 1 cells whose test is undecided after ``seeds`` (none by default)
    adaptive: Adaptive = field(default_factory=Adaptive)
    max_failures: int = 1  # retries of a failing trial before it is recorded as failed
    max_concurrent: int = 0  # 0: as many as the resources allow
    log_checkpoints: bool = False  # copy best weights and exported models into MLflow's artifacts
    #: best weights kept on disk: "best" (the teachers' and, per table cell, the best-validation seed's),
    #: "teachers" (only trials that teach), "all" (every trial's); see retention.py
    keep_weights: str = "best"
    #: stated cost of one 224 x 224 training image of a student step on the target device, in ms, for
    #: --dry-run's estimate (scaled by pixel count to other sizes; 0: measured here at each data set's size)
    per_image_ms: float = 0.0
    cpu_fallback: bool = False  # run GPU-sized trials on CPU when no GPU is visible

    # ---- validation ----------------------------------------------------------------------------
    def __post_init__(self) -> None:
        """Every field checked before anything runs. Methods and data sets named here must be registered:
        :func:`load_config` imports the config's plugins first."""
        self._check_types()
        self._check_datasets()
        self._check_methods()
        self._check_run_settings()

    def _check_types(self) -> None:
        check_fields(self, "")
        for key, kind in (("seeds", int), ("scenarios", str), ("methods", str), ("lskd", bool), ("ablations", str),
                          ("plugins", str)):
            for v in getattr(self, key):
                check_value(f"every entry of {key}", v, kind)
        if not isinstance(self.train, TrainConfig):
            raise UserError(f"train must be a table of train options (e.g. --set train.epochs=5), got {self.train!r}")
        if not isinstance(self.adaptive, Adaptive):
            raise UserError(f"adaptive must be a table (e.g. --set \"adaptive.seeds=[10, 11]\"), got {self.adaptive!r}")
        if not isinstance(self.resources, Resources):
            raise UserError(f"resources must be a table (e.g. --set resources.cpus_per_trial=2), got {self.resources!r}")
        if not isinstance(self.method_options, dict) or not all(isinstance(v, dict) for v in self.method_options.values()):
            raise UserError("method_options must be a table of tables, e.g. --set \"method_options={ctkd={temp_lr=0.01}}\"")
        if not self.pairs or not all(isinstance(p, ArchPair) for p in self.pairs):
            raise UserError("pairs must list teacher -> student networks, e.g. --set \"pairs=[{teacher='resnet34', "
                            "student='mobilenet_v3_small'}]\"")
        from cmkd.archs import get_arch

        if not isinstance(self.pretrained, dict) or not all(isinstance(v, str) and v for v in self.pretrained.values()):
            raise UserError("pretrained maps architectures to weights files, e.g. --set \"pretrained={resnet34="
                            "'/weights/resnet34.pth'}\" (or 'hub': the torch hub cache)")
        for name in self.pretrained:
            get_arch(name)
        labels = [p.label for p in self.pairs]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise UserError(f"pairs lists {twice[0]} twice; drop one")
        if not self.name or any(c in self.name for c in "/\\ "):
            raise UserError(f"benchmark name must be a non-empty word without slashes or spaces, got {self.name!r}")

    def _check_datasets(self) -> None:
        from cmkd.datasets import DATASETS
        from cmkd.datasets.splits import MAX_REPETITION

        if not self.datasets:
            raise UserError("the benchmark has no data set; add one to datasets")
        for d in self.datasets:
            DATASETS.lookup(d.name)
            if d.label and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", d.label):
                raise UserError(f"a datasets entry's label must be lower-case letters, digits and '-', got {d.label!r}")
        keys = [d.key for d in self.datasets]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise UserError(f"data set entry {twice[0]!r} is listed twice: give each entry of one data set its own "
                            "label, e.g. datasets=[{name='synthetic', label='a', options={...}}, "
                            "{name='synthetic', label='b', options={...}}]")
        same = [(a.key, b.key) for i, a in enumerate(self.datasets) for b in self.datasets[i + 1:]
                if (a.name, a.root, a.options) == (b.name, b.root, b.options)]
        if same:
            raise UserError(f"data set entries {same[0][0]!r} and {same[0][1]!r} are the same data (same name, root "
                            "and options): drop one")
        if not self.seeds or any(not 0 <= s <= MAX_REPETITION for s in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds must be distinct integers in 0..{MAX_REPETITION}, got {list(self.seeds)}")

    def _check_methods(self) -> None:
        from cmkd.methods import METHODS

        for s in self.scenarios:
            if s not in SCENARIOS:
                raise UserError(f"unknown scenario {s!r}{nearest(s, SCENARIOS)}; valid: {', '.join(SCENARIOS)}")
        for m in self.methods:
            if m not in METHODS:
                raise UserError(f"unknown method {m!r}{nearest(m, list(METHODS))}; valid: {', '.join(sorted(METHODS))} "
                                "(or register it in a plugin module: --set \"plugins=['my_methods.py']\")")
        for m, options in self.method_options.items():
            if m not in METHODS:
                raise UserError(f"method_options names unknown method {m!r}{nearest(m, list(METHODS))}")
            METHODS[m].Options.from_dict(dict(options), m)
            for axis, how in (("lskd", "lskd=[false, true]"), ("ablation", "ablations=[...] with the ablation scenario")):
                if axis in options:  # the sweep sets these per trial: a value here would be overwritten unseen
                    raise UserError(f"method_options.{m}.{axis} is one of the sweep's axes and would be ignored; set "
                                    f"it with {how}")
        if "ablation" in self.scenarios:  # ablations matter only where their scenario runs
            declared = {a for m in self.methods for a in METHODS[m].ablations}
            owners = sorted(n for n, c in METHODS.items() if c.ablations)
            for a in self.ablations:
                if a not in declared:
                    raise UserError(
                        f"ablation {a!r} is declared by none of the listed methods{nearest(a, sorted(declared))}; "
                        f"list a method that declares it ({', '.join(owners) or 'none is registered'}), drop it with "
                        "--set \"ablations=[]\", or leave 'ablation' out of scenarios")
        if not self.lskd:
            raise UserError("lskd must list at least one of false, true")
        if self.adaptive.seeds:
            again = sorted(set(self.adaptive.seeds) & set(self.seeds))
            if again:
                raise UserError(f"adaptive.seeds repeats seed {again[0]} of seeds; the second stage's seeds are new ones, "
                                "e.g. --set \"adaptive.seeds=[10, 11]\"")
            if "cross-modal" not in self.scenarios:
                raise UserError("adaptive.seeds extends Table 1's cells, which the cross-modal scenario fills: add "
                                "'cross-modal' to scenarios, or --set \"adaptive.seeds=[]\"")

    def _check_run_settings(self) -> None:
        if self.resources.cpus_per_trial <= 0:
            raise UserError(f"resources.cpus_per_trial must be > 0, got {self.resources.cpus_per_trial}")
        if not 0 <= self.resources.gpus_per_trial <= 8:
            raise UserError(f"resources.gpus_per_trial must lie in [0, 8], got {self.resources.gpus_per_trial}")
        if self.keep_weights not in ("best", "teachers", "all"):
            raise UserError(f"keep_weights must be 'best', 'teachers' or 'all', got {self.keep_weights!r}")
        if self.per_image_ms < 0:
            raise UserError(f"per_image_ms must be >= 0 (0: measure), got {self.per_image_ms}")
        if self.max_failures < 0 or self.max_concurrent < 0:
            raise UserError("max_failures and max_concurrent must be >= 0")

    # ---- identity -------------------------------------------------------------------------------
    def config_hash(self) -> str:
        """What makes two benchmarks the same: everything that changes a number (not resources)."""
        d = dataclasses.asdict(self)
        for k in ("resources", "max_failures", "max_concurrent", "log_checkpoints", "per_image_ms", "cpu_fallback",
                  "keep_weights"):
            d.pop(k)
        d["train"] = self.train.identity()
        if self.pairs == (ArchPair(),):  # the paper's pair, added later: absent, so that no earlier hash moves
            d.pop("pairs")
        for entry in d["datasets"]:  # likewise an entry's arch, when it names none
            if not entry["arch"]:
                entry.pop("arch")
        if not self.pretrained:
            d.pop("pretrained")
        if not self.adaptive.seeds:  # no second stage (every config before it): absent, no earlier hash moves
            d.pop("adaptive")
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchConfig":
        data = dict(data)
        valid = [f.name for f in fields(cls)]
        for k in data:
            if k not in valid:
                raise UserError(f"unknown config key {k!r}{nearest(k, valid)}; valid: {', '.join(valid)}")
        if "datasets" in data:
            entries = []
            listed = data["datasets"] if isinstance(data["datasets"], list) else [data["datasets"]]
            for d in listed:
                if isinstance(d, str):
                    d = {"name": d}
                if not isinstance(d, dict) or "name" not in d:
                    raise UserError(f"a datasets entry must be a name or a table with a name, got {d!r}; "
                                    "e.g. datasets=[{name='synthetic', options={n_samples=420}}]")
                bad = set(d) - {"name", "root", "options", "label", "arch"}
                if bad:
                    raise UserError(f"unknown key {sorted(bad)[0]!r} in a datasets entry; valid: name, root, options, "
                                    "label, arch")
                check_value("a datasets entry's arch", d.get("arch", ""), str)
                check_value("a datasets entry's label", d.get("label", ""), str)
                check_value("a datasets entry's name", d["name"], str)
                check_value("a datasets entry's root", d.get("root"), str, optional=True)
                if not isinstance(d.get("options", {}), dict):
                    raise UserError(f"a datasets entry's options must be a table, got {d['options']!r}")
                entries.append(DatasetEntry(d["name"], d.get("root"), dict(d.get("options", {})), d.get("label", ""),
                                            d.get("arch", "")))
            data["datasets"] = tuple(entries)
        if "pairs" in data:
            listed = data["pairs"] if isinstance(data["pairs"], list) else [data["pairs"]]
            pairs = []
            for p in listed:
                if not isinstance(p, dict) or set(p) - {f.name for f in fields(ArchPair)}:
                    raise UserError(f"a pairs entry is a table with teacher and student, got {p!r}; e.g. "
                                    "pairs=[{teacher='resnet34', student='mobilenet_v3_small'}]")
                pairs.append(ArchPair(**p))
            data["pairs"] = tuple(pairs)
        for k in ("seeds", "scenarios", "methods", "lskd", "ablations", "plugins"):
            if k in data:
                v = data[k]
                data[k] = tuple(v) if isinstance(v, (list, tuple)) else (v,)
        if "train" in data and isinstance(data["train"], dict):
            data["train"] = TrainConfig.from_dict(data["train"])
        for key, kind in (("resources", Resources), ("adaptive", Adaptive)):
            if key in data and isinstance(data[key], dict):
                valid = [f.name for f in fields(kind)]
                for k in data[key]:
                    if k not in valid:
                        raise UserError(f"unknown {key} key {k!r}{nearest(k, valid)}; valid: {', '.join(valid)}")
                data[key] = kind(**data[key])
        return cls(**data)


def profile_dict(profile: str) -> dict[str, Any]:
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}{nearest(profile, PROFILES)}; valid: {', '.join(PROFILES)}")
    text = resources.files("cmkd.harness.sweep").joinpath(f"profiles/{profile}.toml").read_text()
    return tomllib.loads(text)


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        if not isinstance(d.setdefault(k, {}), dict):
            raise UserError(f"--set {dotted}: {k} is not a table")
        d = d[k]
    d[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise UserError(f"--set takes KEY=VALUE (TOML value), got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    return key.strip(), value


def load_config(profile: str = "quick", path: str | None = None, overrides: list[str] | None = None) -> BenchConfig:
    """The profile, then the TOML file at ``path``, then the ``--set`` overrides. Seeds chosen beyond the profile
    drop the profile's second stage (``adaptive``) unless it is chosen too: ``--seeds 0,1`` runs two seeds."""
    data = profile_dict(profile)
    if path:
        p = Path(path)
        if p.is_dir():
            raise UserError(f"config file {path} is a folder; pass a .toml file")
        if not p.is_file():
            raise UserError(f"config file {path} does not exist")
        try:
            extra = tomllib.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8 TOML") from None
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{path}: not valid TOML ({exc})") from None
        for k, v in extra.items():
            if isinstance(v, dict) and isinstance(data.get(k), dict):
                data[k] = {**data[k], **v}
            else:
                data[k] = v
    chosen: set[str] = set(extra) if path else set()  # top-level keys set beyond the profile
    for item in overrides or []:
        key, value = parse_override(item)
        _set(data, key, value)
        chosen.add(key.split(".")[0])
    if "seeds" in chosen and "adaptive" not in chosen:  # the profile's second stage belongs to its own seeds
        data.pop("adaptive", None)
    plugins = data.get("plugins", ())
    if isinstance(plugins, (list, tuple)) and all(isinstance(p, str) for p in plugins):
        load_plugins(tuple(plugins))  # methods and data sets the config names may live there (BenchConfig checks)
    return BenchConfig.from_dict(data)
