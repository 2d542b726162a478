"""FitNets, RKD, CRD, C2KD, DIST, NKD, WTTM, SDD and OFA in ``cmkd bench --set methods=[...]`` and in the tables, with no harness
edit: planned against their teachers, run by Ray workers, given rows in Tables 1 and 2 (LSKD rows only
for the method that has the switch)."""

from __future__ import annotations

import pytest

from cmkd.harness.cli.main import main
from cmkd.results.store import ResultsStore

pytestmark = pytest.mark.ray

NEW = ["fitnets", "rkd", "crd", "c2kd", "dist", "nkd", "wttm", "sdd", "ofa"]
WITH_LSKD = {"c2kd", "dist", "nkd", "wttm", "sdd", "ofa"}  # the methods with a logit KD term, so an `lskd` switch


def test_the_other_methods_run_in_a_bench_and_fill_their_table_rows(ray_session, tmp_path, capsys):
    out = tmp_path / "b"
    code = main(["bench", "--profile", "smoke", "--out", str(out), "--set", f"methods={NEW}", "--set", "ablations=[]",
                 "--set", "scenarios=['cross-modal', 'multi-modal']"])
    assert code == 0, capsys.readouterr().err
    records = ResultsStore(out / "results").records()
    done = {(r.spec["method"], r.spec["scenario"], r.variant) for r in records if r.status == "finished"}
    for method in NEW:
        for scenario in ("cross-modal", "multi-modal"):
            assert (method, scenario, "orig") in done
    for method in WITH_LSKD:
        assert (method, "cross-modal", "lskd") in done  # the smoke profile's lskd = [false, true]
    assert {m for m, _, v in done if v == "lskd"} == WITH_LSKD  # no LSKD variant where there is no switch
    assert all(r.status == "finished" for r in records)
    assert main(["tables", "--from", str(out)]) == 0
    md = (out / "tables" / "tables.md").read_text()
    t1, t2 = md.split("Table ")[1], md.split("Table ")[2]
    for table in (t1, t2):
        for label in ("FitNets", "RKD", "CRD", "C2KD", "DIST", "NKD", "WTTM", "SDD", "OFA"):
            row = next(line for line in table.splitlines() if line.startswith(f"| {label}"))
            cells = [c.strip() for c in row.strip("|").split("|")[1:]]
            assert any(c not in ("", "-") for c in cells), row  # a number from a real trial, not a placeholder
