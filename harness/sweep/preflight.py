"""Before a sweep on a Ray cluster: does every node see the benchmark folder and the data?

Storage that is not shared is the commonest way a multi-node sweep loses work (a trial's checkpoint
written where the node that resumes it cannot read it, a data root only the head has). The driver
writes a marker with a fresh token into the benchmark folder; one tiny task pinned to each live node
reads it back and looks for each data root; a node that cannot is named with the path, before any trial
starts.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

from cmkd.errors import UserError

MARKER = ".preflight"


def node_view(marker: str, token: str, paths: list[str]) -> tuple[str, list[str]]:
    """What one node sees: its host name and the paths it cannot read (the marker's folder when the
    marker is missing or holds another token)."""
    missing = []
    try:
        if Path(marker).read_text() != token:
            missing.append(str(Path(marker).parent))
    except OSError:
        missing.append(str(Path(marker).parent))
    missing += [p for p in paths if not Path(p).exists()]
    return socket.gethostname(), missing


def data_paths(cfg) -> list[str]:
    """Absolute data roots of the benchmark's entries (the built-in synthetic data has none)."""
    from cmkd.harness.engine.data import default_root

    roots = [e.root or default_root(e.name) for e in cfg.datasets]
    return sorted({str(Path(r).resolve()) for r in roots if r})


def check_nodes(ray, folder: Path, cfg, timeout_s: float = 60.0) -> int:
    """Run :func:`node_view` on every live node; raise :class:`UserError` naming the first node that misses
    a path. Returns the number of nodes checked."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(8)
    marker = folder / MARKER
    marker.write_text(token)
    paths = data_paths(cfg)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    look = ray.remote(num_cpus=0)(node_view)
    refs = [look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(str(marker), token, paths) for n in nodes]
    try:
        views = ray.get(refs, timeout=timeout_s)
    except Exception as exc:  # a node that cannot even run a task
        raise UserError(f"preflight: not every Ray node answered within {timeout_s:.0f} s ({type(exc).__name__}); "
                        "check `ray status`") from None
    finally:
        marker.unlink(missing_ok=True)
    for node, (host, missing) in zip(nodes, views):
        if missing:
            raise UserError(f"node {node['NodeID'][:12]} ({host}, {node.get('NodeManagerAddress', '?')}) cannot see "
                            f"{missing[0]}: every node must see the benchmark folder and the data at the same path "
                            "(shared storage, e.g. NFS); see the README's 'On a Ray cluster'")
    return len(nodes)
