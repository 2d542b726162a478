"""MLflow tracking: one experiment per benchmark, one run per trial (reused when a trial resumes).

The driver creates the store and the experiment before any trial starts (concurrent first use of
a fresh SQLite store loses runs); trials then write through ``MlflowClient`` with explicit run ids,
always ending their run as FINISHED or FAILED.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cmkd.errors import UserError


def default_uri(out_dir: Path) -> str:
    return f"sqlite:///{out_dir.resolve() / 'mlflow.db'}"


def check_uri(uri: str, must_exist: bool = False) -> None:
    """Fail before any trial when the tracking store cannot be reached (``must_exist``: for reading)."""
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as r:
                if r.status != 200:
                    raise UserError(f"MLflow tracking server {uri} answered {r.status} on /health")
        except (urllib.error.URLError, OSError) as exc:
            raise UserError(f"cannot reach the MLflow tracking server {uri} ({exc}); start it "
                            "(mlflow server --host 127.0.0.1 --port 5000) or drop --tracking-uri") from None
    elif uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if must_exist and not path.is_file():
            raise UserError(f"tracking URI {uri}: {path} does not exist; pass the mlflow.db a benchmark wrote")
        if path.exists():
            _check_sqlite(path)
        elif not path.parent.is_dir() and not must_exist and not _creatable(path.parent):
            raise UserError(f"tracking URI {uri}: folder {path.parent} does not exist")
    elif uri.startswith("file:"):
        raise UserError("MLflow's file store is retired; use sqlite:////abs/path/mlflow.db or an http:// server")
    elif "://" in uri:
        from sqlalchemy import create_engine
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            create_engine(uri)  # loads the dialect and its driver; connects to nothing
        except (ImportError, NoSuchModuleError) as exc:
            raise UserError(f"tracking URI {uri}: its database driver is not installed ({exc}); install it "
                            "(e.g. pip install psycopg2-binary for postgresql://, pymysql for mysql+pymysql://)") from None
        except ArgumentError as exc:
            raise UserError(f"tracking URI {uri} is malformed ({exc})") from None
    else:
        raise UserError(f"tracking URI {uri!r} is neither sqlite:///PATH, http(s)://HOST:PORT nor a database URL")


def _creatable(folder: Path) -> bool:
    """Whether ``folder`` can be made (its nearest existing ancestor is a folder)."""
    for parent in [folder, *folder.parents]:
        if parent.exists():
            return parent.is_dir()
    return False


def _check_sqlite(path: Path) -> None:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            con.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path} is not a readable SQLite database ({exc}); move it away (the MLflow runs in it "
                        "are lost) or pass --tracking-uri to another store") from None


def setup_experiment(uri: str, name: str, artifact_root: Path, tags: dict[str, str]) -> str:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    tags = {**tags, EXPERIMENT_KIND: "custom_model_development"}  # not MLflow 3's GenAI traces view
    try:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.tags.get(EXPERIMENT_KIND) is None:
                client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND, tags[EXPERIMENT_KIND])
            return exp.experiment_id
        artifact_root.mkdir(parents=True, exist_ok=True)
        return client.create_experiment(name, artifact_location=artifact_root.resolve().as_uri(), tags=tags)
    except Exception as exc:  # the store exists but MLflow cannot use it (corrupt, wrong schema, no rights)
        if isinstance(exc, UserError):
            raise
        raise UserError(f"the MLflow store {uri} cannot be used ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                        "pass --tracking-uri to another store") from None


EXPERIMENT_KIND = "mlflow.experimentKind"


def source_tags() -> dict[str, str]:
    """MLflow's standard run tags (``client.create_run`` sets none of them): who ran what, at which commit."""
    import getpass

    import cmkd
    from cmkd.results.provenance import code_commit

    tags = {"mlflow.source.name": "cmkd", "mlflow.source.type": "LOCAL", "cmkd.version": cmkd.__version__}
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):
        pass
    commit, dirty = code_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["cmkd.git.dirty"] = str(bool(dirty)).lower()
    return tags


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


class TrialTracker:
    """One trial's MLflow run; the run id is kept in the trial folder so a resumed trial reuses it."""

    def __init__(self, uri: str, experiment_id: str, run_file: Path, name: str, tags: dict[str, str],
                 params: dict[str, Any]):
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient

        self._Metric, self._Param, self._RunTag = Metric, Param, RunTag
        self.client = MlflowClient(uri)
        run_id = run_file.read_text().strip() if run_file.exists() else ""
        #: the last epoch this run already holds: a resumed trial replays the epochs after its checkpoint,
        #: and those that reached MLflow before the kill are not logged twice
        self.logged_epoch = 0
        if run_id:
            try:
                self.client.get_run(run_id)
                self.client.update_run(run_id, status="RUNNING")
                self.logged_epoch = max((m.step for m in self.client.get_metric_history(run_id, "epoch_seconds")), default=0)
            except Exception:
                run_id = ""
        if not run_id:
            run = self.client.create_run(experiment_id, run_name=name, tags={**source_tags(), **tags})
            run_id = run.info.run_id
            run_file.parent.mkdir(parents=True, exist_ok=True)
            run_file.write_text(run_id)
            flat = _flatten(params)
            items = [self._Param(k, v) for k, v in flat.items()]
            for i in range(0, len(items), 100):
                self.client.log_batch(run_id, params=items[i:i + 100])
        self.run_id = run_id

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[self._RunTag(k, str(v)) for k, v in tags.items()])

    def log_epoch(self, report) -> None:
        import time

        if report.epoch <= self.logged_epoch:
            return
        ts = int(time.time() * 1000)
        values = {f"train/{k}": v for k, v in report.losses.items()}
        values.update({f"val_f1/{k}": v for k, v in report.val_f1.items()})
        values.update({k: v for k, v in report.extra.items()})
        values["epoch_seconds"] = report.seconds
        values["images_per_s"] = report.images_per_s
        metrics = [self._Metric(k, float(v), ts, report.epoch) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, result, folder: Path, log_checkpoints: bool) -> None:
        import time

        ts = int(time.time() * 1000)
        metrics = []
        # summaries under their own names: the per-epoch series val_f1/<m> stays a clean curve
        for key, out in result.outputs.items():
            for name, metric in (("test_f1", "test_f1"), ("val_f1", "best_val_f1"), ("best_epoch", "best_epoch"),
                                 ("last_test_f1", "last_test_f1"), ("oracle_test_f1", "oracle_test_f1"),
                                 ("oracle_epoch", "oracle_epoch"), ("test_accuracy", "test_accuracy"),
                                 ("test_avg_accuracy", "test_avg_accuracy"), ("test_kappa", "test_kappa")):
                if out.get(name) is not None:
                    metrics.append(self._Metric(f"{metric}/{key}", float(out[name]), ts, 0))
        for key, cost in (result.costs or {}).items():  # the deployed models' parameters, FLOPs, speed
            metrics += [self._Metric(f"{name}/{key}", float(value), ts, 0) for name, value in cost.items()]
        metrics.append(self._Metric("wall_time_s", float(result.wall_time_s), ts, 0))
        params = {f"data.{k}": str(v)[:500] for k, v in sorted((result.data_options or {}).items())}
        params.update({"resolved.split_fingerprint": result.split_fingerprint, "resolved.threads": str(result.threads)})
        run = self.client.get_run(self.run_id)
        new = [self._Param(k, v) for k, v in params.items() if k not in run.data.params]
        # a trial finished again in the same run (its record was lost, or its result set aside and retrained)
        # keeps the summaries it logged the first time: one row per (metric, step)
        metrics = [m for m in metrics if m.key not in run.data.metrics]
        tags = [self._RunTag("out_dir", result.out_dir), self._RunTag("device", result.device),
                self._RunTag("host", result.host)]
        if result.diverged:
            d = result.diverged
            tags.append(self._RunTag("diverged", f"loss {d['term']} not finite ({d['value']}) at epoch {d['epoch']}"))
        self.client.log_batch(self.run_id, metrics=metrics, params=new, tags=tags)
        art = folder / "mlflow-artifacts"
        art.mkdir(exist_ok=True)
        for key, out in result.outputs.items():
            if "confusion" in out:
                (art / f"confusion_{key}.json").write_text(json.dumps(out["confusion"]))
        self.client.log_artifacts(self.run_id, str(art))
        self.client.log_artifact(self.run_id, str(folder / "result.json"))
        if log_checkpoints:
            for path in result.exports.values():  # each program with its sidecar
                self.client.log_artifact(self.run_id, path, artifact_path="models")
                self.client.log_artifact(self.run_id, str(Path(path).with_suffix(".json")), artifact_path="models")
            for key in result.outputs:
                if (folder / f"best_{key}.pt").is_file():
                    self.client.log_artifact(self.run_id, str(folder / f"best_{key}.pt"), artifact_path="checkpoints")
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, exc: BaseException | None) -> None:
        """End the run as FAILED with the error, or as KILLED when the driver stopped it (``exc`` None)."""
        try:
            if exc is None:
                self.client.set_terminated(self.run_id, "KILLED")
                return
            self.client.set_tag(self.run_id, "error", f"{type(exc).__name__}: {exc}"[:4000])
            self.client.set_terminated(self.run_id, "FAILED")
        except Exception:
            pass
