"""``cmkd``: the one front door. Thin: parse, validate, call the floor below."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import sys
from typing import Any, Sequence

from cmkd.errors import Interrupted, UserError
from cmkd.harness.engine.spec import flag_name, train_fields


def parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_pairs(pairs: Sequence[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in pairs or []:
        if "=" not in item:
            raise UserError(f"{flag} takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_value(v.strip())
    return out


# ---- commands ------------------------------------------------------------------------------
def cmd_methods(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from cmkd.methods import METHODS
    from cmkd.methods.options import schema

    rows, broken = [], []
    for name, cls in sorted(METHODS.items()):
        try:  # one bad method class must not break the listing of the others
            cls.Options()
            opts = "\n".join(f"{o['name']}: {o['type']} = {o['default']!r}" + (f" [{o['allowed']}]" if o["allowed"] else "")
                             + (f"  {o['help']}" if o["help"] else "") for o in schema(cls.Options))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            broken.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        rows.append([name, ", ".join(cls.teacher_kinds) or "-", cls.description, opts or "-"])
    print(tabulate(rows, headers=["method", "teacher", "description", "options: type = default [allowed]  help"],
                   tablefmt="simple", maxcolwidths=[None, None, 40, 90]))
    for line in broken:
        print(f"cmkd: warning: method {line} (its options class is broken; fix it to use the method)", file=sys.stderr)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from cmkd.datasets import DATASETS

    rows = []
    for name, cls in sorted(DATASETS.items()):
        try:
            from cmkd.harness.engine.data import default_root

            root = args.root or default_root(name)
            adapter = cls(root=root) if root else cls()
            found = "yes" if adapter.found() else "no"
            chans = adapter.modality_channels()
            n_classes = len(adapter.class_names)
            if chans and not all(chans.values()):  # channels known only once the data are found
                chans = {m: "?" for m in chans}
        except UserError as exc:
            found, chans, n_classes = f"no ({exc})", cls.modalities, len(cls.class_names)
        mods = ", ".join(f"{m} ({c})" + (" rich" if m == cls.rich else "") for m, c in chans.items())
        if chans and "?" in chans.values():
            mods += " (--data-opt prefixes; channels from the data)"
        rows.append([name, mods, n_classes or "from the data", found, cls.description])
    print(tabulate(rows, headers=["data set", "modalities (channels)", "classes", "data found", "description"],
                   tablefmt="simple", maxcolwidths=[None, 40, None, 30, 60]))
    return 0


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field: ``--epochs N``, ``--split-rule R``; a bool that defaults to
    false is ``--amp``, one that defaults to true is ``--no-augment``."""
    for f, kind in train_fields():
        if kind is bool:
            parser.add_argument(flag_name(f.name, f.default), dest=f.name, action="store_const",
                                const=not f.default, default=None, help=f"train.{f.name} = {not f.default}")
        else:
            parser.add_argument(flag_name(f.name), dest=f.name, type=kind, default=None, metavar=f.name.upper(),
                                help=f"train.{f.name} (default {f.default})")


def _train_config(args: argparse.Namespace):
    from cmkd.harness.engine.spec import TrainConfig

    given = {f.name: getattr(args, f.name) for f, _ in train_fields()}
    return TrainConfig(**{k: v for k, v in given.items() if v is not None})


def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    from cmkd.methods import get_method

    cls = get_method(args.method)
    opts = parse_pairs(args.opt, "--opt")
    valid = set(cls.Options().to_dict())
    if args.lskd:
        if "lskd" not in valid:
            raise UserError(f"--lskd does not apply to method {args.method!r}; it is a switch of "
                            f"{', '.join(_methods_with_option('lskd'))}")
        opts["lskd"] = True
    if args.ablation:
        if "ablation" not in valid:
            raise UserError(f"--ablation does not apply to method {args.method!r}; it is an option of "
                            f"{', '.join(_methods_with_option('ablation'))}")
        opts["ablation"] = args.ablation
    return opts


def spec_from_args(args: argparse.Namespace):
    """The trial spec a ``cmkd train`` command line describes."""
    from cmkd.archs.choice import ArchChoice
    from cmkd.harness.engine.spec import TrialSpec
    from cmkd.methods import get_method

    cls = get_method(args.method)
    scenario = args.scenario or (cls.teacher_kinds[0] if cls.teacher_kinds else "single")
    return TrialSpec(
        dataset=args.dataset, method=args.method, seed=args.seed, modality=args.modality, scenario=scenario,
        method_options=_method_options(args), dataset_options=parse_pairs(args.data_opt, "--data-opt"),
        data_root=args.root, train=_train_config(args),
        arch=str(ArchChoice.join(args.arch or [], "--arch")),
        teacher_arch=str(ArchChoice.join(args.teacher_arch or [], "--teacher-arch")),
        teacher_options=parse_pairs(args.teacher_opt, "--teacher-opt"),
        pretrained=args.pretrained or "", teacher_pretrained=args.teacher_pretrained or "",
    )


def _methods_with_option(name: str) -> list[str]:
    from dataclasses import fields

    from cmkd.methods import METHODS

    return sorted(m for m, cls in METHODS.items() if name in {f.name for f in fields(cls.Options)})


@contextlib.contextmanager
def stop_after_epoch():
    """SIGINT / SIGTERM end the running epoch, write a checkpoint and exit 130 / 143 (the same command
    resumes from it); a second signal stops at once."""
    from cmkd.harness.engine.trial import StopRequest

    def handle(signum, frame):
        if StopRequest.signum is not None:
            raise KeyboardInterrupt
        StopRequest.signum = signum
        print(f"cmkd: stopping after this epoch (signal {signum}); again to stop at once", file=sys.stderr, flush=True)

    old = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        StopRequest.signum = None
        for sig, h in old.items():
            signal.signal(sig, h)


def cmd_train(args: argparse.Namespace) -> int:
    from cmkd.harness.engine.trial import EpochReport, run_trial

    spec = spec_from_args(args)

    def show(r: EpochReport) -> None:
        f1 = "  ".join(f"{k} {100 * v:5.2f}" for k, v in r.val_f1.items())
        extra = "".join(f"  {k} {v:.3g}" for k, v in r.extra.items())
        print(f"epoch {r.epoch:>3}/{r.epochs}  loss {r.losses['loss']:.4f}  val F1 {f1}{extra}  "
              f"{r.seconds:5.1f} s  {r.images_per_s:6.0f} img/s", flush=True)

    with stop_after_epoch():
        result = run_trial(spec, out_dir=args.out, runs_root=args.runs, on_epoch=None if args.quiet else show, export=True)
    if result.reused:
        print(f"already finished: {result.out_dir} (delete it to train again)")
    for key, rec in result.outputs.items():
        print(f"test F1 [{key}] {100 * rec['test_f1']:.2f}  (best validation epoch {rec['best_epoch']}, "
              f"val F1 {100 * rec['val_f1']:.2f})")
    for key, path in result.exports.items():
        print(f"deployable model [{key}]: {path} (cmkd predict --model {path} --input DATA)")
    print(f"trial {result.trial_id}: {result.out_dir}")
    if args.json:
        print(json.dumps({k: v for k, v in result.to_dict().items() if k != "history"}, default=str))
    if result.loss_rose:
        print("cmkd: warning: the training loss ended above its first epoch's; check the learning rate", file=sys.stderr)
    if result.diverged:
        d = result.diverged
        print(f"cmkd: diverged: loss {d['term']} not finite ({d['value']}) at epoch {d['epoch']}; recorded in "
              f"{result.out_dir}/result.json (the best epochs before it are kept); lower --lr to train it anew "
              "(another trial)", file=sys.stderr)
        return 1
    return 0


# ---- parser ----------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the command's usage is one `--help` away)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"cmkd: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="cmkd", description="cmkd-bench: cross-modal knowledge distillation benchmark")
    from cmkd import __version__

    p.add_argument("--version", action="version", version=f"cmkd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("methods", help="list registered methods").set_defaults(func=cmd_methods)
    d = sub.add_parser("datasets", help="list registered data sets and whether their data are found")
    d.add_argument("--root", help="a data root to look in (default: $CMKD_DATA/<name>, i.e. ./data/<name>)")
    d.set_defaults(func=cmd_datasets)

    t = sub.add_parser("train", help="run one trial without Ray and print its test F1")
    t.add_argument("--method", required=True)
    t.add_argument("--dataset", required=True)
    t.add_argument("--modality", help="the modality of a single-modal method (student, KD students)")
    t.add_argument("--seed", type=int, default=0, help="repetition: selects the split and the initialisation")
    t.add_argument("--scenario", help="cross-modal or multi-modal (KD students; default: the method's)")
    t.add_argument("--lskd", action="store_true", help="KD students: apply logit standardisation (LSKD)")
    t.add_argument("--ablation", help="an ablation the method declares (cmkd methods lists them)")
    t.add_argument("--opt", action="append", metavar="KEY=VALUE", help="a method option (repeatable)")
    t.add_argument("--arch", action="append", metavar="[MODALITY=]NAME",
                   help="the network trained: one architecture, or one per modality (repeatable); default resnet18; "
                        "cmkd archs lists them, timm:<name> names any timm model")
    t.add_argument("--teacher-arch", action="append", metavar="[MODALITY=]NAME",
                   help="a distilled method's teacher network (same forms as --arch); the teacher is looked up by it")
    t.add_argument("--pretrained", metavar="PATH|hub",
                   help="initial weights of the trained encoders: a torchvision/timm state-dict file, or hub (the torch "
                        "hub cache); never downloaded; its content hash joins the trial's identity")
    t.add_argument("--teacher-pretrained", metavar="PATH|hub", help="the teacher's initial weights (its lookup matches them)")
    t.add_argument("--teacher-opt", action="append", metavar="KEY=VALUE",
                   help="a method option of the teacher's trial (repeatable): the teacher is looked up by it")
    add_train_flags(t)
    t.add_argument("--root", help="data root (real data sets)")
    t.add_argument("--data-opt", action="append", metavar="KEY=VALUE", help="a data-set option (repeatable)")
    t.add_argument("--out", help="the trial's folder (default: under --runs, named by the trial)")
    t.add_argument("--runs", default=os.environ.get("CMKD_RUNS", "cmkd-runs"),
                   help="store of trial folders, where teachers are looked up (default: ./cmkd-runs)")
    t.add_argument("--quiet", action="store_true")
    t.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    t.set_defaults(func=cmd_train)

    for module in _command_modules():
        module.add_parser(sub)
    return p


def _command_modules() -> list:
    """Sub-commands that live in their own modules of this package (each with ``add_parser(sub)``)."""
    from importlib import import_module
    from pkgutil import iter_modules

    from cmkd.harness import cli

    return [import_module(f"cmkd.harness.cli.{m.name}") for m in sorted(iter_modules(cli.__path__), key=lambda m: m.name)
            if m.name != "main"]


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # schema-migration chatter on a new store
    logging.getLogger("alembic").setLevel(logging.WARNING)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from cmkd.plugins import load_plugins

        load_plugins()  # $CMKD_PLUGINS: methods and data sets registered outside the package
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"cmkd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:
        print(f"cmkd: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if exc.errno not in PATH_ERRNOS:
            raise
        # a path the system refuses (too long, read-only, not a folder): one line naming it, exit 2
        where = f" ({exc.filename if len(str(exc.filename)) <= 120 else str(exc.filename)[:60] + '...'})" if exc.filename else ""
        print(f"cmkd: error: {exc.strerror or exc}{where}; pass a shorter or writable path", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cmkd: interrupted; what was finished is kept (trials keep their last checkpoint, caches are written "
              "whole or not at all): run the same command again to resume", file=sys.stderr)
        return 130


#: what a bad path given by the user raises from any file operation
PATH_ERRNOS = {errno.ENAMETOOLONG, errno.EROFS, errno.ENOTDIR, errno.EACCES}


def entry() -> None:
    """The ``cmkd`` command: :func:`main`, then an exit without the interpreter's teardown (1-2 s of
    torch's module finalisation, measured on a 2-core machine) — every output is written and fsync'ed by
    then. A command that started Ray (whose shutdown runs at exit) exits the normal way."""
    code = main()
    if "ray" in sys.modules:
        raise SystemExit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
