"""Official-code arrays of a chosen size, the cheapest real files a cache is made from."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def official(root: Path, n: int = 60, side: int = 8, seed: int = 0) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    np.save(root / "RGB_data_normalized.npy", rng.random((n, 3, side, side), dtype=np.float32))
    np.save(root / "DEPTH_data_normalized.npy", rng.random((n, 1, side, side), dtype=np.float32))
    np.save(root / "labels.npy", np.arange(n) % 6)
    return root
