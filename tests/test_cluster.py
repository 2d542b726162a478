"""A real multi-node Ray cluster on this machine: a head and a worker node, each its own raylet with one
CPU (``ray start --block`` processes), an MLflow server as the tracking store. The benchmark joins it
(``--address``), its trials run on both nodes, the worker node dies mid-sweep and the trial it was running
resumes on the head from its last checkpoint, every trial ending exactly once; a node that does not see
the benchmark folder is named before anything starts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import MlflowServer, free_port

from cmkd.harness.sweep.preflight import node_view
from cmkd.results.store import ResultsStore

pytestmark = pytest.mark.ray

RAY = str(Path(sys.executable).with_name("ray"))
#: token auth off on this loopback-only cluster; a lost node is noticed within a few seconds
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_health_check_period_ms": "1000",
       "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000"}
NODE = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(80 * 2**20)]


class LocalCluster:
    """``ray start --head`` and ``ray start --address`` on loopback, each in its own process group (started,
    and every process stopped, by the ``with`` block)."""

    def __init__(self, folder: Path, default_temp_dir: bool = False):
        import tempfile

        self.folder = folder
        self.default_temp_dir = default_temp_dir
        # its own temp dir (short: Ray's socket paths must fit 107 characters), so that the cluster is never
        # found by a later ray.init on this machine
        self.temp_dir = tempfile.mkdtemp(prefix="cmkd-ray-")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], prefix: list[str] | None = None) -> None:
        log = open(self.folder / f"{name}.log", "w")
        temp = [] if self.default_temp_dir else ["--temp-dir", self.temp_dir]
        self.procs[name] = subprocess.Popen([*(prefix or []), RAY, "start", "--block", *temp, *args, *NODE], env=ENV,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def nodes(self) -> list[dict]:
        """The live nodes (asked from a separate process: this test process may hold another Ray session)."""
        code = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
                "print(json.dumps([{'id': n['NodeID'], 'head': 'node:__internal_head__' in n['Resources']} "
                "for n in ray.nodes() if n['Alive']]))" % self.address)
        out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
        return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else []

    def wait_for(self, n: int, timeout: float = 120) -> list[dict]:
        end = time.time() + timeout
        while time.time() < end:
            nodes = self.nodes()
            if len(nodes) == n:
                return nodes
            time.sleep(1)
        raise AssertionError(f"the cluster never had {n} live nodes: {self.nodes()}")

    def kill(self, name: str, node_id: str) -> None:
        """SIGKILL a node: its process group and its raylet (found by its node id)."""
        try:
            os.killpg(self.procs[name].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.procs[name].wait()
        ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        for line in ps.splitlines():
            if node_id in line and "raylet" in line:
                os.kill(int(line.split()[0]), signal.SIGKILL)

    def __enter__(self) -> "LocalCluster":
        self.start("head", ["--head", "--port", str(self.port), "--include-dashboard", "false"])
        return self

    def __exit__(self, *exc) -> None:
        for name, proc in reversed(self.procs.items()):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        current = Path("/tmp/ray/ray_current_cluster")  # what a head in the default temp dir leaves behind
        if self.default_temp_dir and current.exists() and current.read_text().strip().endswith(f":{self.port}"):
            current.unlink()


def bench(cluster: LocalCluster, out: Path, uri: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cmkd", "bench", "--profile", "smoke", "--address", cluster.address, "--out", str(out),
           "--tracking-uri", uri, "--set", "methods=['kdv1']", "--set", "scenarios=['cross-modal']",
           "--set", "ablations=[]", "--set", "lskd=[false]", *extra]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_trials_spread_over_nodes_and_a_lost_node_costs_only_its_trials_last_epochs(tmp_path):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "b"
    with LocalCluster(tmp_path) as cluster, MlflowServer(tmp_path) as server:
        cluster.start("worker", ["--address", cluster.address])
        nodes = cluster.wait_for(2)
        worker = next(n["id"] for n in nodes if not n["head"])
        head = next(n["id"] for n in nodes if n["head"])
        # 6 trials (two seeds) of 5 epochs, a checkpoint after every epoch
        proc = bench(cluster, out, server.uri, "--seeds", "0,1", "--set", "train.epochs=5",
                     "--set", "train.checkpoint_every=1",
                     "--set", "datasets=[{name='synthetic', options={n_samples=240, image_size=32}}]")
        store, client = ResultsStore(out / "results"), MlflowClient(server.uri)
        lost = killed_at = None
        while proc.poll() is None and lost is None:
            # kill the worker node once a trial finished there and another runs there past a checkpoint
            finished_there = [r for r in store.records() if r.node_id == worker and r.status == "finished"]
            for exp in client.search_experiments() if finished_there else []:
                for run in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'"):
                    if run.data.tags.get("node_id") != worker:
                        continue
                    trial = run.data.tags["trial_id"]
                    if list((out / "runs").rglob(f"*{trial}/checkpoint.pt")):
                        cluster.kill("worker", worker)
                        lost, killed_at = trial, time.time()
                        break
            time.sleep(0.2)
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        assert lost is not None, "the worker node never ran a second trial past a checkpoint: nothing was killed"
        records = {r.trial_id: r.to_dict() for r in store.records()}
        assert len(records) == 6 and {r["status"] for r in records.values()} == {"finished"}
        # trials ran on both nodes; the lost one resumed on the head from its last checkpoint, once
        assert {r["node_id"] for r in records.values()} == {head, worker}
        again = records[lost]
        assert again["attempts"] == 2 and again["node_id"] == head and again["resumed_from"], again
        assert 1 <= again["resumed_from"][0] < 5
        # nothing that had finished ran again
        before = [r for r in records.values() if r["ended_at"] < killed_at]
        assert before and all(r["attempts"] == 1 for r in before)
        assert all(r["attempts"] == 1 for t, r in records.items() if t != lost)
        # one MLflow run per trial, finished, tagged with the node of its last attempt
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])  # this server: this bench
        runs = [r for r in runs if r.data.tags.get("trial_id") in records]
        assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(records)
        assert {r.info.status for r in runs} == {"FINISHED"}
        assert {r.data.tags["node_id"] for r in runs if r.data.tags["trial_id"] == lost} == {head}
        assert "preflight: 2 Ray nodes see" in stdout


def test_a_node_that_does_not_see_the_benchmark_folder_is_named_before_anything_starts(tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-Urm", "true"]).returncode != 0:
        pytest.skip("needs a mount namespace (unshare -Urm) to give one node its own view of the disk")
    out = tmp_path / "shared" / "b"
    out.mkdir(parents=True)
    hide = f"mount -t tmpfs none {tmp_path / 'shared'} && exec \"$0\" \"$@\""
    with LocalCluster(tmp_path) as cluster, MlflowServer(tmp_path) as server:
        # the worker node's processes see an empty folder where the benchmark folder is
        cluster.start("worker", ["--address", cluster.address], prefix=["unshare", "-Urm", "sh", "-c", hide])
        cluster.wait_for(2)
        proc = bench(cluster, out, server.uri)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-2000:]
    line = err.strip().splitlines()[-1]  # (Ray's own connection lines come before it)
    assert line.startswith("cmkd: error: node ") and f"({socket.gethostname()}, " in line, err[-2000:]
    assert f"cannot see {out}: every node must see" in line and "shared storage" in line
    assert not list((out / "runs").rglob("*")) and not ResultsStore(out / "results").records()


def test_node_view_names_what_a_node_cannot_read(tmp_path):
    marker = tmp_path / "b" / ".preflight"
    marker.parent.mkdir()
    marker.write_text("abc")
    assert node_view(str(marker), "abc", [str(tmp_path)])[1] == []
    assert node_view(str(marker), "other", [])[1] == [str(marker.parent)]  # another folder at the same path
    assert node_view(str(tmp_path / "x" / ".preflight"), "abc", [])[1] == [str(tmp_path / "x")]
    assert node_view(str(marker), "abc", [str(tmp_path / "data")])[1] == [str(tmp_path / "data")]


def test_the_preflight_names_a_node_and_the_data_root_it_misses(ray_session, tmp_path):
    """The same check on the suite's one-node Ray, with a data root nobody has: what every machine can run
    (the test above needs a mount namespace)."""
    from types import SimpleNamespace

    from cmkd.errors import UserError
    from cmkd.harness.sweep.bench_config import DatasetEntry
    from cmkd.harness.sweep.preflight import check_nodes

    folder = tmp_path / "b"
    folder.mkdir()
    seen = SimpleNamespace(datasets=(DatasetEntry("synthetic"), DatasetEntry("sunrgbd", root=str(tmp_path))))
    assert check_nodes(ray_session, folder, seen) == 1 and not (folder / ".preflight").exists()
    missing = SimpleNamespace(datasets=(DatasetEntry("sunrgbd", root=str(tmp_path / "nowhere")),))
    with pytest.raises(UserError, match=rf"^node [0-9a-f]{{12}} \({socket.gethostname()}, .*\) cannot see "
                                        rf"{tmp_path / 'nowhere'}: every node must see"):
        check_nodes(ray_session, folder, missing)


def test_a_local_bench_starts_its_own_ray_while_another_instance_runs_on_the_machine(tmp_path):
    """Without --address, ray.init would attach to a running instance it finds (here a head in Ray's default
    temp dir, as `ray start` leaves one) and refuse num_cpus."""
    with LocalCluster(tmp_path, default_temp_dir=True) as cluster:
        cluster.wait_for(1)
        done = subprocess.run([sys.executable, "-m", "cmkd", "bench", "--profile", "smoke", "--out", str(tmp_path / "b"),
                               "--set", "methods=['kdv1']", "--set", "scenarios=['cross-modal']", "--set", "ablations=[]",
                               "--set", "lskd=[false]"], env=ENV, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(ResultsStore(tmp_path / "b" / "results").records()) == 3
