"""The harness: floors 3 and 4 and the front door.

- ``engine/``: one trial (``run_trial``), callable from a test, the CLI or a Ray worker; knows nothing
  of Ray, MLflow or benchmarks.
- ``sweep/``: a benchmark: config, plan, schedule, Ray Tune, MLflow tracking, progress, retention.
- ``cli/``: the ``cmkd`` command, thin: it parses, validates and calls the floors below.

The results floor (records, store, tables, statistics) is the top-level ``cmkd.results``: above the
engine, below the sweep. ``docs/architecture.md`` draws the floors; ``tests/test_floors.py`` keeps them.
"""
