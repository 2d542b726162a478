"""Floor 3, the engine: one trial, from a ``TrialSpec`` to a ``TrialResult`` in its trial folder.

Data on the device, batching, augmentation, the optimiser, epochs, evaluation and selection,
checkpoints and resume, teachers, deployable models. It imports nothing of Ray, MLflow, the sweep,
the results floor or the CLI.
"""
