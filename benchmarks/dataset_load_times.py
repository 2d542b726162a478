"""Raw read, cache build and cache load times of the three real adapters on generated files in the
published formats and real image sizes, scaled linearly to the real data-set sizes.

    python benchmarks/dataset_load_times.py [--scale 0.01]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from real_fixtures import write_eurosat, write_sunrgbd, write_tristar  # noqa: E402

from cmkd.datasets import get_dataset  # noqa: E402
from cmkd.datasets.cache import read_cache, write_cache  # noqa: E402

REAL = {"eurosat-ms-sar": 27000, "sunrgbd": 2105, "tristar": 14200}


def measure(name: str, root: Path, out: Path, **opts) -> tuple[int, float, float, float]:
    adapter = get_dataset(name, root=str(root), **opts)
    t = time.perf_counter()
    raw = adapter.read_raw()
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    data, norm = adapter.normalize(raw)
    write_cache(out, data, {"normalisation": norm})
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    read_cache(out, name)
    t_load = time.perf_counter() - t
    return data.n, t_read, t_build, t_load


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=30)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    rows = []
    write_eurosat(tmp / "eu", classes=("Forest", "AnnualCrop", "River", "Highway", "SeaLake"), per_class=args.per_class, size=64)
    rows.append(("eurosat-ms-sar", *measure("eurosat-ms-sar", tmp / "eu", tmp / "eu-cache")))
    write_sunrgbd(tmp / "sun", per_class=args.per_class // 3, size=(730, 530))
    rows.append(("sunrgbd", *measure("sunrgbd", tmp / "sun", tmp / "sun-cache")))
    write_tristar(tmp / "tri", shots_per_split=2, frames=args.per_class, size=(320, 240))
    rows.append(("tristar", *measure("tristar", tmp / "tri", tmp / "tri-cache")))
    print(f"{'data set':<16}{'n':>6}{'raw read':>12}{'cache build':>14}{'cache load':>13}   scaled to the real size")
    for name, n, r, b, l in rows:
        k = REAL[name] / n
        print(f"{name:<16}{n:>6}{r:>10.2f} s{b:>12.2f} s{l:>11.3f} s   n={REAL[name]}: read {r * k:7.1f} s, "
              f"build {b * k:6.1f} s, load {l * k:5.2f} s")


if __name__ == "__main__":
    main()
