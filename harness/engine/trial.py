"""The one training engine: every method's trial runs through ``run_trial``.

It owns data on the device, batching (paired or unpaired), augmentation, the optimiser, epochs,
per-output validation F1 and best-epoch selection, checkpoints and resume, and seeding. It knows
nothing of Ray or MLflow: callers observe it through ``on_epoch``.
"""

from __future__ import annotations

import copy
import math
import platform
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import cmkd
from cmkd.archs.weights import content_hash
from cmkd.datasets import MultiModalData, Split
from cmkd.datasets.splits import empty_parts
from cmkd.errors import Interrupted, UserError
from cmkd.methods import Batch, Method, get_method
from cmkd.methods.backbones import check_encoders, kaiming_conv1_

from .augment import augment, strong_augment
from .checkpoint import CheckpointPolicy, state_bytes
from .data import load_data, spec_info, split_for
from .corrupt import PARSE_ERRORS, is_damage, read_json_file, read_or_set_aside, reason, set_aside
from .folders import (CHECKPOINT_FILE, DEFAULT_ROOT, RESULT_FILE, SPEC_FILE, claim_folder, remove_stale_temporaries,
                      trial_dir, variant_of)
from .io import save_torch, write_json
from .locks import FolderLock
from .metrics import confusion, scores, weighted_f1
from .spec import SPEC_VERSION, TrialSpec
from .step import make_optimizer, nhwc, optimise, train_step
from .teachers import load_teacher


@dataclass
class EpochReport:
    epoch: int  # 1-based
    epochs: int
    losses: dict[str, float]
    val_f1: dict[str, float]
    best: dict[str, dict[str, float]]
    seconds: float
    images_per_s: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class TrialResult:
    trial_id: str
    spec: dict[str, Any]
    method: str
    variant: str
    outputs: dict[str, dict[str, float]]  # key -> best_epoch, val_f1, test_f1
    epochs_run: int
    wall_time_s: float
    train_time_s: float
    images_per_s: float
    device: str
    split_fingerprint: str
    data_fingerprint: str
    n_classes: int
    out_dir: str
    teacher: str | None = None
    exports: dict[str, str] = field(default_factory=dict)
    resumed_from: list[int] = field(default_factory=list)  # epochs at which an interrupted run picked up again
    history: list[dict[str, Any]] = field(default_factory=list)
    code_version: str = cmkd.__version__
    host: str = field(default_factory=socket.gethostname)
    #: torch CPU threads: the same seed gives the same numbers only with the same thread count (and device)
    threads: int = 0
    data_options: dict[str, Any] = field(default_factory=dict)  # the data-set options in force
    checkpoint_s: float = 0.0  # seconds this run spent writing resume checkpoints
    #: per output, what its deployable model costs (parameters, FLOPs, latency, images/s: measured, so not
    #: in ``outputs``, whose numbers a rerun reproduces)
    costs: dict[str, dict[str, float]] = field(default_factory=dict)
    #: the data description an export needs (DataInfo, per-modality preprocessing, class names): cmkd export
    deploy: dict[str, Any] = field(default_factory=dict)
    #: file name -> content hash of every weights file kept beside the result (``best_<output>.pt``,
    #: ``model_<output>.pt2``): a teacher's or an export's weights are checked against it before use
    weights_sha256: dict[str, str] = field(default_factory=dict)
    #: a non-finite loss ended the run: its epoch, the loss term and its value (None: it did not diverge).
    #: ``outputs`` then hold the best epochs before it, but the tables leave the trial out of every mean
    diverged: dict[str, Any] | None = None
    #: the training loss of the last epoch ended above the first epoch's (flagged, not judged; never for a
    #: method whose loss weights ramp up by design, e.g. DKD's warm-up)
    loss_rose: bool = False
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialResult":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


class StopRequest:
    """A signal asked the running trial to stop: it ends its epoch, writes a checkpoint and raises
    :class:`Interrupted` (``cmkd train`` sets it on SIGINT / SIGTERM)."""

    signum: int | None = None


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(1_000_003 * (seed + 1) + epoch)
    return g


@dataclass
class Prepared:
    """Everything resolved and checked before any compute: a trial that gets this far can run."""

    spec: TrialSpec
    method_cls: type[Method]
    options: Any
    data: MultiModalData
    split: Split
    out_dir: Path


def prepare(spec: TrialSpec, out_dir: str | Path | None = None, runs_root: str | Path = DEFAULT_ROOT,
            data: MultiModalData | None = None) -> Prepared:
    method_cls = get_method(spec.method)
    options = spec.options()
    if data is None:
        data = load_data(spec.dataset, spec.data_root, spec.dataset_options)
    content = data.fingerprint()
    if spec.data_fingerprint and spec.data_fingerprint != content:
        raise UserError(f"the {spec.dataset} data at {spec.data_root or 'the default root'} have other content "
                        f"(fingerprint {content}) than this trial was planned on ({spec.data_fingerprint}): the data "
                        "changed, or this node sees other files; restore them, or run the command again to plan anew")
    spec = spec.replace(data_fingerprint=content)
    info = spec_info(data, spec)
    check_networks(method_cls, info, spec)
    method_cls.check(info, spec.modality, options)
    method_cls.check_epochs(spec.train.epochs)
    if not method_cls.teacher_kinds and spec.scenario in ("cross-modal", "multi-modal"):
        raise UserError(f"method {spec.method!r} has no teacher; drop --scenario {spec.scenario}")
    if method_cls.teacher_kinds:
        if spec.scenario not in method_cls.teacher_kinds:
            raise UserError(f"method {spec.method!r} learns from a teacher: pass --scenario "
                            f"{' or '.join(method_cls.teacher_kinds)} (got {spec.scenario!r})")
        if spec.scenario == "cross-modal" and spec.modality == info.rich:
            others = [m for m in info.channels if m != info.rich]
            raise UserError(f"a cross-modal student learns from the {info.rich!r} teacher and cannot train on "
                            f"{info.rich!r} itself; pass --modality {others[0]}")
    split = split_for(data, spec.seed, spec.train.split_rule, spec.train.split)
    empty = [name for name, part in (("train", split.train), ("validation", split.val), ("test", split.test)) if len(part) == 0]
    if empty:
        if spec.train.split == "published":
            raise UserError(f"data set {spec.dataset!r}: its published split leaves the {empty[0]} part empty; "
                            "use split = \"paper\"")
        if data.splits and spec.seed in data.splits:
            raise UserError(f"data set {spec.dataset!r}: the split files shipped for repetition {spec.seed} leave the "
                            f"{empty[0]} part empty; fix or remove that index file (the split rule then applies)")
        why = "; ".join(empty_parts(data.labels, spec.train.split_rule)[:3])
        hint = (" (the official rule cuts validation at int(n * (0.7 + 0.1)) = int(n * 0.7999999999999999): a class "
                "of 5, 6 or 10 samples gets no validation row)" if spec.train.split_rule == "official" else "")
        raise UserError(f"data set {spec.dataset!r} ({data.n} samples) gives an empty {empty[0]} part under split rule "
                        f"{spec.train.split_rule!r}{hint}: {why}; use more samples per class")
    folder = Path(out_dir) if out_dir is not None else trial_dir(runs_root, spec)
    claim_folder(folder, spec)
    return Prepared(spec, method_cls, options, data, split, folder)


def check_networks(method_cls, info, spec: TrialSpec) -> None:
    """Refuse, before anything is built, an architecture that names a modality the data lack, or cannot take
    a modality's input; a teacher architecture (or teacher options) for a method without a teacher."""
    from cmkd.archs import DEFAULT_ARCH
    from cmkd.archs.choice import ArchChoice

    ArchChoice.parse(spec.arch).check_modalities(list(info.channels), "--arch")
    own = [spec.modality] if method_cls.single_modality and spec.modality else list(info.channels)
    own = [m for m in own if m in info.channels]  # a modality the data lack: the method's check names it
    check_encoders(info, own)
    if spec.pretrained:
        check_pretrained(info, own, spec)
    if not method_cls.teacher_kinds:
        if spec.teacher_arch != DEFAULT_ARCH or spec.teacher_options or spec.teacher_pretrained:
            what = ("--teacher-arch" if spec.teacher_arch != DEFAULT_ARCH else
                    "--teacher-pretrained" if spec.teacher_pretrained else "teacher options")
            raise UserError(f"method {spec.method!r} learns from no teacher: drop {what}")
        return
    ArchChoice.parse(spec.teacher_arch).check_modalities(list(info.channels), "--teacher-arch")
    if spec.scenario in method_cls.teacher_kinds:
        check_encoders(info, [info.rich] if spec.scenario == "cross-modal" else list(info.channels), teacher=True)


def check_pretrained(info, modalities: list[str], spec: TrialSpec) -> None:
    """The pretrained file still holds what the spec hashed, and fits each encoder the trial builds (checked on
    the meta device: no weights are built)."""
    from cmkd.archs.base import on_meta
    from cmkd.archs.weights import content_hash, fitted_state, read_state
    from cmkd.methods.backbones import arch_name, encoder_for

    path = Path(spec.pretrained)
    if not path.is_file() or content_hash(path) != spec.pretrained_hash:
        raise UserError(f"pretrained weights {path} changed or vanished since this trial was planned (hash "
                        f"{spec.pretrained_hash}); restore the file or plan again")
    state = read_state(path)
    for m in modalities:
        fitted_state(on_meta(lambda m=m: encoder_for(info, m)), state, arch_name(info, m), path)


def as_width(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A float input in the trial's width (``train.precision``); labels, indices and token ids unchanged."""
    return x.to(dtype) if x.is_floating_point() else x


def set_bn_momentum(method: Method, momentum: float) -> int:
    """``train.bn_momentum`` on every BatchNorm layer the method trains; returns how many were set."""
    layers = [m for m in method.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.momentum = momentum
    return len(layers)


def load_pretrained(method: Method, spec: TrialSpec) -> int:
    """Load the spec's pretrained weights into every encoder the method trains (not its teacher's copy);
    returns how many were loaded."""
    from cmkd.archs.weights import fitted_state, read_state

    path = Path(spec.pretrained)
    state = read_state(path)
    loaded = 0
    for name, module in method.named_modules():
        if hasattr(module, "stage_modules") and not name.startswith("teacher"):
            module.load_state_dict(fitted_state(module, state, spec.arch, path))
            loaded += 1
    return loaded


class Engine:
    """Trains one method on one data set and split."""

    def __init__(self, prep: Prepared, runs_root: str | Path = DEFAULT_ROOT):
        self.prep = prep
        self.spec = spec = prep.spec
        self.cfg = spec.train
        self.device = pick_device(self.cfg.device)
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        self.info = spec_info(prep.data, spec)
        self.teacher_record = None
        teacher = None
        kind = spec.scenario if prep.method_cls.teacher_kinds else None
        if kind:
            teacher, self.teacher_record = load_teacher(
                spec, kind, self.info, prep.split.fingerprint(), prep.data.fingerprint(), runs_root, self.device,
            )
        _seed_all(spec.seed)
        self.method: Method = prep.method_cls(self.info, spec.modality, prep.options, teacher, kind)
        self.method.on_train_split(torch.from_numpy(prep.data.labels[prep.split.train]))
        if self.cfg.conv1_init == "kaiming":
            kaiming_conv1_(self.method)
        if spec.pretrained:
            load_pretrained(self.method, spec)
        if self.cfg.bn_momentum:
            set_bn_momentum(self.method, self.cfg.bn_momentum)
        #: the float width of weights and inputs (train.precision); a teacher loads in the width its own trial saved,
        #: the same one (its spec has this train config)
        self.dtype = getattr(torch, self.cfg.precision)
        self.method.to(self.device, self.dtype)
        self.memory_format = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        self.loss_fn = optimise(self.method, self.cfg.channels_last, self.cfg.compile)
        self.optimizer = make_optimizer(self.method.param_groups(self.cfg.lr), self.cfg.lr, self.cfg.weight_decay)
        inputs = self.method.inputs()
        self.x = {m: as_width(torch.from_numpy(prep.data.modalities[m]).to(self.device), self.dtype) for m in inputs}
        self.y = torch.from_numpy(prep.data.labels).to(self.device)
        self.train_idx = torch.from_numpy(prep.split.train).to(self.device)
        #: the modalities the flip/rotation rule applies to (images; not vectors, spectrograms or sequences)
        self.geometric = frozenset(m for m in inputs if prep.data.sample(m).geometric)
        self.amp = bool(self.cfg.amp and self.device.type == "cuda")

    # ---- one epoch of training ------------------------------------------------------------
    def batches(self, epoch: int):
        """Yield this epoch's augmented batches; the order and draws replay exactly on resume."""
        g = _epoch_generator(self.spec.seed, epoch)
        n = len(self.train_idx)
        bs = self.cfg.batch_size
        paired = self.method.paired_batches()
        mods = list(self.x)
        # positions in the training split, shuffled (per modality when unpaired); rows = train_idx[positions]
        order = {m: torch.randperm(n, generator=g).to(self.device) for m in (["_"] if paired else mods)}
        perms = {m: self.train_idx[o] for m, o in order.items()}
        for start in range(0, n, bs):
            if min(bs, n - start) < 2:  # a one-sample batch breaks BatchNorm in train mode
                continue
            index = None
            if paired:
                idx = perms["_"][start:start + bs]
                raw = {m: self.x[m][idx] for m in mods}
                y, y_by, index = self.y[idx], None, order["_"][start:start + bs]
            else:
                raw = {m: self.x[m][perms[m][start:start + bs]] for m in mods}
                y, y_by = None, {m: self.y[perms[m][start:start + bs]] for m in mods}
            xb = augment(raw, g, self.method.joint_augmentation and paired, self.geometric) if self.cfg.augment else raw
            strong = strong_augment(raw, g, self.geometric) if self.method.wants_strong_view() else None
            if self.cfg.channels_last:
                xb, strong = nhwc(xb), nhwc(strong)
            yield Batch(x=xb, y=y, y_by_modality=y_by, strong=strong, index=index)

    def plain_batches(self, rows: torch.Tensor | None = None):
        """The whole training split (or ``rows``) in order, paired and not augmented (a method's
        :meth:`data_pass` and :meth:`validation_pass`)."""
        bs, rows = self.cfg.batch_size, self.train_idx if rows is None else rows
        for start in range(0, len(rows), bs):
            idx = rows[start:start + bs]
            x = {m: v[idx] for m, v in self.x.items()}
            index = torch.arange(start, start + len(idx), device=self.device)
            yield Batch(x=nhwc(x) if self.cfg.channels_last else x, y=self.y[idx], index=index)

    def train_epoch(self, epoch: int) -> tuple[dict[str, float], int]:
        self.method.train()
        self.method.on_epoch_start(epoch, self.cfg.epochs)
        torch.manual_seed(_epoch_generator(self.spec.seed, epoch).initial_seed() + 17)
        if self.method.wants_data_pass(epoch, self.cfg.epochs):  # seeded: a resumed trial draws the same
            self.method.eval()
            with torch.no_grad():
                self.method.data_pass(self.plain_batches())
            self.method.train()
        sums: dict[str, torch.Tensor] = {}
        steps = images = 0
        for batch in self.batches(epoch):
            total, parts = train_step(self.method, self.optimizer, batch, epoch, self.amp, self.device.type, self.loss_fn)
            steps += 1
            images += next(iter(batch.x.values())).shape[0]
            for k, v in {"loss": total, **parts}.items():
                v = v.detach().float()
                sums[k] = sums[k] + v if k in sums else v
        losses = {k: float(v) / max(steps, 1) for k, v in sums.items()}
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            raise Diverged(epoch + 1, bad[0], losses[bad[0]])
        if self.method.wants_validation_pass(epoch, self.cfg.epochs):
            self.method.eval()
            with torch.no_grad():
                self.method.validation_pass(self.plain_batches(torch.from_numpy(self.prep.split.val).to(self.device)))
        return losses, images

    # ---- evaluation ---------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        self.method.eval()
        out: dict[str, list[np.ndarray]] = {}
        t_idx = torch.from_numpy(idx).to(self.device)
        for start in range(0, len(idx), self.cfg.eval_batch_size):
            b = t_idx[start:start + self.cfg.eval_batch_size]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                xb = {m: x[b].contiguous(memory_format=self.memory_format) for m, x in self.x.items()}
                logits = self.method.predict(xb)
            for k, v in logits.items():
                out.setdefault(k, []).append(v.argmax(1).cpu().numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    def deployable(self, key: str) -> torch.nn.Module:
        """Output ``key``'s standalone model (what its best weights hold): ``method.export(key)``, or the
        whole method where a method declares no export."""
        from .deploy import weights_module

        return weights_module(self.method, key)

    def best_weights(self, key: str) -> dict[str, torch.Tensor]:
        """A CPU copy of output ``key``'s deployable model's weights as they are now."""
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.deployable(key).state_dict().items()}

    # ---- the loop -----------------------------------------------------------------------
    def run(self, on_epoch: Callable[[EpochReport], None] | None = None, keep_weights: bool = True,
            export: bool | None = None) -> TrialResult:
        """Train (or resume) to the last epoch. ``keep_weights``: write each output's best weights
        (``best_<output>.pt``, the deployable model only); ``export``: also as ``model_<output>.pt2``
        programs (None: where the method declares ``export_models``)."""
        export = self.method.export_models if export is None else export
        folder = self.prep.out_dir
        state = self.resume(folder / CHECKPOINT_FILE)
        policy = CheckpointPolicy.for_state(self.cfg.checkpoint_every, self.cfg.checkpoint_budget,
                                            3 * state_bytes(self.method.state_dict()))
        saved_epoch = state.epoch

        def checkpoint() -> None:
            nonlocal saved_epoch
            policy.timed_write(lambda: save_torch({"trial_id": self.spec.trial_id(), "method": self.method.state_dict(),
                                                   "optimizer": self.optimizer.state_dict(),
                                                   "state": state.to_dict(), "best_weights": state.weights},
                                                  folder / CHECKPOINT_FILE))
            saved_epoch = state.epoch

        for epoch in range(state.epoch, self.cfg.epochs):
            try:
                report = self.epoch(epoch, state, keep_weights or export)
            except Diverged as exc:  # an outcome, not a crash: recorded, never retried
                state.diverged = {"epoch": exc.epoch, "term": exc.term, "value": str(exc.value)}
                break
            if policy.due(epoch + 1, self.cfg.epochs, report.seconds):
                checkpoint()
            try:
                if on_epoch is not None:
                    on_epoch(report)
                if StopRequest.signum is not None:
                    raise Interrupted(StopRequest.signum, f"stopped after epoch {epoch + 1}/{self.cfg.epochs} (checkpoint "
                                                          f"in {folder}); run the same command to resume")
            except BaseException:
                # stopped (Ctrl-C, SIGTERM, Tune ending the trial) or the observer failed: keep this epoch
                if saved_epoch < state.epoch:
                    checkpoint()
                raise
        return self.finish(state, keep_weights, export, sum(policy.written_s))

    def resume(self, ckpt_path: Path) -> "RunState":
        """The state to go on from: the checkpoint's (weights and optimiser loaded), or a fresh one. A
        checkpoint that does not load (cut short, another trial's, another network's) is set aside and
        the trial starts from scratch: a damaged file costs its epochs, never the trial."""
        if not ckpt_path.exists():
            return RunState()
        method_state = copy.deepcopy(self.method.state_dict())  # a half-loaded checkpoint must not leak in
        try:
            ckpt = torch.load(ckpt_path, map_location=self.device, weights_only=True)  # tensors and plain values only
            if ckpt.get("trial_id", self.spec.trial_id()) != self.spec.trial_id():
                raise ValueError(f"belongs to trial {ckpt['trial_id']}, not {self.spec.trial_id()}")
            self.method.load_state_dict(ckpt["method"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            state = RunState.from_dict(ckpt["state"])
            state.weights = {k: {n: t.cpu() for n, t in w.items()} for k, w in ckpt["best_weights"].items()}
        except PARSE_ERRORS as exc:
            if not is_damage(exc):
                raise
            self.method.load_state_dict(method_state)
            self.optimizer = make_optimizer(self.method.param_groups(self.cfg.lr), self.cfg.lr, self.cfg.weight_decay)
            if ckpt_path.exists():
                set_aside(ckpt_path, reason(exc), "the trial starts again from epoch 1")
            return RunState()
        state.resumed_from.append(state.epoch)
        return state

    def epoch(self, epoch: int, state: "RunState", keep: bool) -> EpochReport:
        """Train one epoch, evaluate, select each output's best epoch on validation; ``state`` moves on."""
        t0 = time.perf_counter()
        losses, images = self.train_epoch(epoch)
        train_s = time.perf_counter() - t0
        val_f1, test_f1, test_pred = self.evaluate()
        split, labels = self.prep.split, self.prep.data.labels
        selectable = self.method.selectable(epoch, self.cfg.epochs)
        for k in self.method.outputs():
            if selectable and (k not in state.best or val_f1[k] > state.best[k]["val_f1"]):
                n_classes = self.prep.data.n_classes
                state.best[k] = {"best_epoch": epoch + 1, "val_f1": val_f1[k], "test_f1": test_f1[k],
                                 **scores(labels[split.test], test_pred[k], n_classes),
                                 "confusion": confusion(labels[split.test], test_pred[k], n_classes).tolist()}
                if keep:
                    state.weights[k] = self.best_weights(k)
        extra = self.method.epoch_metrics()
        state.epoch = epoch + 1
        state.train_time += train_s
        state.images += images
        state.wall += time.perf_counter() - t0
        state.history.append({"epoch": epoch + 1, "seconds": train_s, **{f"train/{k}": v for k, v in losses.items()},
                              **{f"val_f1/{k}": v for k, v in val_f1.items()},
                              **{f"test_f1/{k}": v for k, v in test_f1.items()}, **extra})
        best = {k: {kk: vv for kk, vv in v.items() if kk != "confusion"} for k, v in state.best.items()}
        return EpochReport(epoch + 1, self.cfg.epochs, losses, val_f1, best, train_s, images / max(train_s, 1e-9), extra)

    def evaluate(self) -> tuple[dict[str, float], dict[str, float], dict[str, np.ndarray]]:
        """Validation and test F1 per output in one pass, and the test predictions. Only validation selects:
        test F1 per epoch is kept for the selection-bias report (last epoch, oracle), never to choose."""
        split, labels = self.prep.split, self.prep.data.labels
        n_val = len(split.val)
        pred = self.predict(np.concatenate([split.val, split.test]))
        outputs = self.method.outputs()
        val_f1 = {k: weighted_f1(labels[split.val], pred[k][:n_val]) for k in outputs}
        test_f1 = {k: weighted_f1(labels[split.test], pred[k][n_val:]) for k in outputs}
        return val_f1, test_f1, {k: v[n_val:] for k, v in pred.items()}

    def finish(self, state: "RunState", keep_weights: bool, export: bool, checkpoint_s: float) -> TrialResult:
        """Write the kept weights, the exports and ``result.json``; drop the resume checkpoint."""
        from .deploy import describe_data, export_outputs

        prep, folder = self.prep, self.prep.out_dir
        from .deploy import deployed_cost

        costs = {}
        for k in self.method.outputs():
            if k in state.best:  # a run that diverged in its first epoch has no best epoch
                state.best[k].update(selection_summary(state.history, k))
            costs[k] = deployed_cost(self.method, k, self.device)
        deploy = describe_data(prep.data, self.spec.dataset)
        if keep_weights or export:
            for k, weights in state.weights.items():
                save_torch(weights, folder / f"best_{k}.pt")
        exports = export_outputs(folder, self.spec, deploy, state.best, list(state.weights)) if export and state.weights else {}
        if export and not keep_weights:
            for k in state.weights:
                (folder / f"best_{k}.pt").unlink(missing_ok=True)
        kept = sorted(p for p in (*folder.glob("best_*.pt"), *folder.glob("model_*.pt2")) if p.is_file())
        weights_sha256 = {p.name: content_hash(p) for p in kept}
        result = TrialResult(
            trial_id=self.spec.trial_id(), spec=self.spec.to_dict(), method=self.spec.method,
            variant=variant_of(self.spec), outputs=state.best, epochs_run=state.epoch, wall_time_s=state.wall,
            train_time_s=state.train_time, images_per_s=state.images / max(state.train_time, 1e-9),
            device=device_name(self.device), split_fingerprint=prep.split.fingerprint(),
            data_fingerprint=prep.data.fingerprint(), n_classes=prep.data.n_classes, out_dir=str(folder),
            teacher=(self.teacher_record or {}).get("out_dir"), history=state.history, exports=exports,
            resumed_from=state.resumed_from, threads=torch.get_num_threads(),
            data_options=dict(prep.data.meta.get("options", {})), checkpoint_s=checkpoint_s, deploy=deploy, costs=costs,
            weights_sha256=weights_sha256, diverged=state.diverged,
            loss_rose=loss_rose(state.history) and not self.method.loss_ramps_up(),
        )
        write_json(result.to_dict(), folder / RESULT_FILE)
        # the resume state (weights + optimiser moments) is dead weight once the result exists
        (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
        return result


@dataclass
class RunState:
    """How far a trial has got: saved in its resume checkpoint (``to_dict``, plain values) with each
    output's deployable weights at its best epoch (``weights``, tensors, saved beside it)."""

    epoch: int = 0  # epochs done
    best: dict[str, dict[str, Any]] = field(default_factory=dict)  # output -> best_epoch, val_f1, test_f1, confusion
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per epoch
    train_time: float = 0.0
    images: int = 0
    wall: float = 0.0
    resumed_from: list[int] = field(default_factory=list)  # epochs at which an interrupted run picked up again
    diverged: dict[str, Any] | None = None  # the epoch, loss term and value that ended the run (see TrialResult)
    weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in ("epoch", "best", "history", "train_time", "images", "wall", "resumed_from")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunState":
        return cls(**{k: v for k, v in d.items() if k != "weights"})


class Diverged(Exception):
    """A non-finite training loss: the trial ends here as ``diverged`` (an outcome, not an error)."""

    def __init__(self, epoch: int, term: str, value: float):
        super().__init__(f"loss {term} is not finite ({value}) at epoch {epoch}")
        self.epoch, self.term, self.value = epoch, term, value


def loss_rose(history: list[dict[str, Any]]) -> bool:
    """The last epoch's training loss ended above the first's (two epochs at least)."""
    losses = [h["train/loss"] for h in history if "train/loss" in h]
    return len(losses) >= 2 and losses[-1] > losses[0]


def selection_summary(history: list[dict[str, Any]], key: str) -> dict[str, float | int]:
    """Test F1 of output ``key`` at the last epoch and at its best test epoch (the oracle: what a paper
    that selects on test would report), from the per-epoch history; the first epoch wins ties."""
    scores = [h[f"test_f1/{key}"] for h in history]
    oracle = int(np.argmax(scores))
    return {"last_test_f1": scores[-1], "oracle_test_f1": scores[oracle], "oracle_epoch": history[oracle]["epoch"]}


def device_name(device: torch.device) -> str:
    """``cuda (NVIDIA H100 80GB HBM3)`` or ``cpu (x86_64)``: what a number was computed on (the thread
    count is recorded beside it)."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.machine() or 'unknown'})"


def run_trial(spec: TrialSpec, out_dir: str | Path | None = None, runs_root: str | Path = DEFAULT_ROOT,
              on_epoch: Callable[[EpochReport], None] | None = None, data: MultiModalData | None = None,
              keep_weights: bool = True, export: bool | None = None) -> TrialResult:
    """Run (or resume, or find finished) one trial. All bad input fails before training starts."""
    prep = prepare(spec, out_dir, runs_root, data)
    spec, folder = prep.spec, prep.out_dir
    stored = read_or_set_aside(folder / RESULT_FILE, lambda p: TrialResult.from_dict(read_json_file(p)),
                               "the trial trains again")
    if stored is not None:
        result = stored
        stale = [f"{what} ({old} -> {new})" for what, old, new in (
            ("trial id", result.trial_id, spec.trial_id()),
            ("data content", result.data_fingerprint, prep.data.fingerprint()),
            ("split", result.split_fingerprint, prep.split.fingerprint())) if old != new]
        if stale:
            raise UserError(f"{folder} holds a finished result that does not match this trial: {', '.join(stale)}; "
                            "remove that folder or choose a new --out")
        result.reused = True
        return result
    engine = Engine(prep, runs_root)
    with FolderLock(folder, "trial"):  # one process trains a trial folder at a time
        if (folder / RESULT_FILE).exists():  # finished by another process between the check above and the lock
            return run_trial(spec, out_dir, runs_root, on_epoch, prep.data, keep_weights, export)
        remove_stale_temporaries(folder)  # no writer of this folder is alive while we hold its lock
        write_json({"trial_id": spec.trial_id(), "spec": spec.to_dict(), "variant": variant_of(spec),
                    "spec_version": SPEC_VERSION}, folder / SPEC_FILE)
        prep.split.save(folder / "split.npz")
        return engine.run(on_epoch, keep_weights, export)
