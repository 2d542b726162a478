"""Tiny synthetic data and a short protocol, so that the suite trains in minutes."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

from cmkd.harness.engine.spec import TrainConfig, TrialSpec  # noqa: E402

TINY_DATA = {"n_samples": 120, "image_size": 16}


def tiny_spec(method: str = "student", modality: str | None = "rgb", seed: int = 0, epochs: int = 2,
              **kw) -> TrialSpec:
    data_opts = {**TINY_DATA, **kw.pop("dataset_options", {})}
    train = TrainConfig(epochs=epochs, batch_size=kw.pop("batch_size", 32), threads=1, **kw.pop("train", {}))
    return TrialSpec(dataset="synthetic", method=method, seed=seed, modality=modality, dataset_options=data_opts,
                     train=train, **kw)




def method_with_teacher(runs_root, name: str, scenario: str = "cross-modal", modality: str = "depth", **options):
    """A distilled method built as the engine builds it, with the real teacher of ``runs_root`` (the
    ``teachers`` fixture): returns the method, the tiny data and seed 0's split. The method has seen its
    training split (``on_train_split``), so :func:`train_batch` feeds it like the engine."""
    import torch

    from cmkd.datasets import make_split
    from cmkd.harness.engine.data import data_info, load_data
    from cmkd.harness.engine.teachers import load_teacher
    from cmkd.methods import get_method

    data = load_data("synthetic", None, TINY_DATA)
    info = data_info(data)
    split = make_split(data.labels, 0)
    spec = tiny_spec(method=name, modality=modality, scenario=scenario, method_options=options,
                     data_fingerprint=data.fingerprint())
    teacher, _ = load_teacher(spec, scenario, info, split.fingerprint(), data.fingerprint(), runs_root,
                              torch.device("cpu"))
    cls = get_method(name)
    method = cls(info, modality, cls.Options.from_dict(options, name), teacher, scenario)
    method.on_train_split(torch.from_numpy(data.labels[split.train]))
    return method, data, split


def train_batch(data, split, n: int = 16, start: int = 0):
    """The training split's samples ``start .. start + n`` as a paired batch with their positions."""
    import torch

    from cmkd.methods import Batch

    rows = split.train[start:start + n]
    return Batch(x={m: torch.from_numpy(a[rows]) for m, a in data.modalities.items()},
                 y=torch.from_numpy(data.labels[rows]), index=torch.arange(start, start + len(rows)))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real ``mlflow server`` on loopback with a SQLite store under ``folder`` (started and stopped by
    the ``with`` block): the tracking store a cluster uses, since SQLite on shared storage is unsafe."""

    def __init__(self, folder):
        self.folder = folder
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "MlflowServer":
        import subprocess
        import sys
        import time
        import urllib.request

        self.proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                                      str(self.port), "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
                                      "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, start_new_session=True)
        for _ in range(120):
            try:
                urllib.request.urlopen(self.uri + "/health", timeout=1)
                return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError("mlflow server did not start")

    def __exit__(self, *exc) -> None:
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


def distilled_trial(runs_root, method: str, scenario: str, lskd: bool):
    """A 2-epoch trial of a distilled ``method`` on depth from the real teachers of ``runs_root`` (the
    ``teachers`` fixture), checked for what every such trial must give; returns its result."""
    from cmkd.harness.engine.trial import run_trial

    spec = tiny_spec(method=method, modality="depth", scenario=scenario, method_options={"lskd": lskd})
    res = run_trial(spec, runs_root=runs_root)
    assert res.epochs_run == 2 and res.variant == ("lskd" if lskd else "orig")
    assert 0 <= res.outputs["depth"]["test_f1"] <= 1
    return res


def assert_gradients_reach_the_student_only(method, total) -> None:
    """Back-propagate ``total``: every parameter of the student network gets a gradient, the frozen
    teacher none (nor does it require one)."""
    total.backward()
    assert all(p.grad is not None for p in method.net.parameters())
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
