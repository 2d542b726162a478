"""A plan that spends seeds where the answer needs them: the benchmark's second stage (``adaptive.seeds``).

A cell of Table 1 whose Holm-corrected p against STUDENT lands near the significance line after the first
seeds would be marked one way on one CPU and the other way on the next: its mark is settled by rounding, not
by the data. After every trial of the first seeds has ended, the cells whose corrected p lies in
``adaptive.band`` (see :class:`cmkd.harness.sweep.bench_config.Adaptive`) also run the second seeds, with
their column's STUDENT and their teachers; the table then tests them on all of their seeds, as any cell.

The decision reads the first seeds' results only, so a resumed or repeated run takes the same one, and it is
written to ``adaptive.json`` beside the results. Its error rate, simulated for one paired test under the null
(``benchmarks/adaptive_design.py``): with the default band [0.005, 0.5), 10 + 10 seeds call a cell with no
effect significant about as often as a fixed design does (4.9-5.0% against 5.0%), and find a real effect
nearly as often as 20 seeds for every cell would (effect of 0.8 standard deviations: 91% against 62% at 10 seeds
and 92% at 20).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from cmkd.harness.engine.folders import variant_of
from cmkd.harness.engine.io import write_json

from .bench_config import Adaptive, BenchConfig
from .plan import EntryInfo, PlannedTrial, build_plan

DECISION_FILE = "adaptive.json"


@dataclass(frozen=True)
class Undecided:
    """One Table 1 cell whose corrected p at the first seeds lies in the band."""

    dataset: str
    column: str
    row: str
    p_holm: float
    n: int

    def label(self) -> str:
        return f"{self.row} @ {self.dataset}/{self.column} (Holm p {self.p_holm:.3g}, {self.n} seeds)"


def band_text(band: tuple[float, float]) -> str:
    """``[0.005, 0.5)``; ``[0.005, 1]`` when the band reaches 1 (which it then includes)."""
    lo, hi = band
    return f"[{lo:g}, {hi:g}{']' if hi >= 1 else ')'}"


def second_config(cfg: BenchConfig) -> BenchConfig:
    """The config of the second stage alone: its seeds, no further stage."""
    return replace(cfg, seeds=cfg.adaptive.seeds, adaptive=Adaptive())


def undecided_cells(rows: pd.DataFrame, cfg: BenchConfig) -> list[Undecided]:
    """The distilled cells of Table 1 whose Holm p over the first seeds' results lies in the band (Table 1's own
    statistics: ``build_table``)."""
    from cmkd.results.cells import cells_from_results
    from cmkd.results.tables import build_table, has_results

    cells = cells_from_results(rows[rows.seed.isin(cfg.seeds)])
    if not has_results(cells, 1):
        return []
    table = build_table(cells, 1)
    lo, hi = cfg.adaptive.band
    out = []
    for (row, (dataset, column)), cell in table.cells.items():
        p = cell.p_holm
        if p is not None and p >= lo and (p < hi or hi >= 1):  # [lo, 1]: every cell not settled as significant
            out.append(Undecided(dataset, column, row, float(p), cell.n))
    return out


def plan_rows(plan: list[PlannedTrial], infos: dict[str, EntryInfo]) -> pd.DataFrame:
    """Planned trials as results rows (one per output, no score): where each would land in the tables, by the
    same placement (``cells_from_results``) their results will take."""
    out = []
    for p in plan:
        s = p.spec
        mods = [s.modality] if s.modality else list(infos[p.data_key].info.channels)
        out += [{"status": "finished", "dataset": s.dataset, "entry": p.entry, "scenario": s.scenario,
                 "method": s.method, "variant": variant_of(s), "modality": m, "seed": s.seed, "arch": s.arch,
                 "teacher_arch": s.teacher_arch, "pairs": ";".join(p.pairs), "test_f1": 0.0, "trial_id": p.trial_id}
                for m in mods]
    return pd.DataFrame(out)


def second_plan(cfg: BenchConfig, infos: dict[str, EntryInfo]) -> list[PlannedTrial]:
    """Every trial the second stage may run (none without one): the candidates of :func:`extension`, and the
    records a folder may hold of this config (never superseded)."""
    return build_plan(second_config(cfg), infos) if cfg.adaptive.seeds else []


def extension(cfg: BenchConfig, infos: dict[str, EntryInfo], cells: list[Undecided],
              candidates: list[PlannedTrial] | None = None) -> list[PlannedTrial]:
    """The second seeds' trials that the undecided cells need: their own, their column's STUDENT, and every
    teacher of those; ``candidates``: :func:`second_plan`, when the caller has it already."""
    from cmkd.results.cells import STUDENT, cells_from_results

    if not cells:
        return []
    more = candidates if candidates is not None else second_plan(cfg, infos)
    landing = cells_from_results(plan_rows(more, infos))
    landing = landing[landing.table == 1]
    wanted = {(c.dataset, c.column, c.row) for c in cells} | {(c.dataset, c.column, STUDENT) for c in cells}
    ids = {t for d, c, r, t in zip(landing.dataset, landing.column, landing.row, landing.trial_id) if (d, c, r) in wanted}
    by_id = {p.trial_id: p for p in more}
    todo = list(ids)
    while todo:  # the teachers' closure
        teacher = by_id[todo.pop()].teacher_id
        if teacher is not None and teacher not in ids:
            ids.add(teacher)
            todo.append(teacher)
    return [p for p in more if p.trial_id in ids]


def write_decision(folder: Path, cfg: BenchConfig, cells: list[Undecided], trials: list[PlannedTrial]) -> Path:
    """``adaptive.json``: the band, both stages' seeds, each undecided cell with its p, the trials added."""
    path = Path(folder) / DECISION_FILE
    write_json({"band": list(cfg.adaptive.band), "first_seeds": list(cfg.seeds), "more_seeds": list(cfg.adaptive.seeds),
                "cells": [{"dataset": c.dataset, "column": c.column, "row": c.row, "p_holm_first": c.p_holm,
                           "n_first": c.n} for c in cells],
                "trials": sorted(p.name for p in trials)}, path)
    return path
