"""Floor 5, the sweep: a benchmark config -> a plan of trials -> Ray Tune trials tracked in MLflow, with
live progress, retention of weights and the cluster preflight. Writes each trial's ``ResultRecord``
into the results store (``cmkd.results``)."""
