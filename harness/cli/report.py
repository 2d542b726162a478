"""``cmkd report``: a benchmark folder's self-contained ``report.html`` (``cmkd bench`` writes one itself)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cmkd.errors import UserError


def cmd_report(args: argparse.Namespace) -> int:
    from cmkd.results.page import write_html_report

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; pass a benchmark folder (what cmkd bench --out wrote)")
    if args.out:
        out = Path(args.out)
        if out.is_dir() or not out.parent.is_dir():
            raise UserError(f"--out {out} must be a file path in an existing folder (e.g. {folder / 'report.html'})")
    t0 = time.perf_counter()
    path = write_html_report(folder, args.out)
    print(f"report: {path} ({path.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - t0:.1f} s); open it in a browser")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page of a benchmark folder (report.html)")
    p.add_argument("folder", metavar="FOLDER", help="a benchmark folder (what cmkd bench --out wrote)")
    p.add_argument("--out", help="the page's path (default: FOLDER/report.html)")
    p.set_defaults(func=cmd_report)
