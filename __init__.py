"""cmkd-bench: a benchmarking harness for cross-modal knowledge distillation.

Import root of the repository: ``cmkd.datasets`` (floor 1, data adapters), ``cmkd.methods``
(floor 2, what to train), ``cmkd.harness`` (floors 3-6: engine, sweep, reports, CLI).
"""

__version__ = "0.1.0"
