"""cmkd-bench: a benchmarking harness for cross-modal knowledge distillation.

Floors, each importing only from those below it (``docs/architecture.md``):
0. ``cmkd.errors``, ``cmkd.registry``, ``cmkd.plugins``: one-line user errors, the generic registry,
   plugin loading;
1. ``cmkd.datasets``: data-set adapters;
2. ``cmkd.methods``: what to train;
3. ``cmkd.harness.engine``: one trial;
4. ``cmkd.results``: the result record, the results store, tables and statistics;
5. ``cmkd.harness.sweep``: a benchmark on Ray Tune and MLflow;
6. ``cmkd.harness.cli``: the ``cmkd`` command.
"""

__version__ = "0.1.0"
