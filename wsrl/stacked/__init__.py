"""Training a sweep's runs at once: one model whose parameters carry a leading member axis.

    python -m wsrl.train -m hydra/launcher=stacked experiment=table2 device=cuda trainer.matmul_precision=high \
        hydra.launcher.deadline_s=480 [hydra.launcher.rng=exact | hydra.launcher.compile=true] \
        [hydra.launcher.group_by=robot]

Each member's run directory holds what a single run's holds (``python -m wsrl.report`` reads it unchanged, and its
``checkpoints/last.ckpt`` loads in ``python -m wsrl.evaluation``); ``results.json`` adds a ``stacked`` block
(group, size, slot, rng, precision). The same command resumes a stopped launch and reports finished members.
A group is a LightningModule fitted by a Lightning Trainer, as a single run is: hosted so, the step ran at 0.998 of
its rate in a bare PyTorch loop (30 members, FP32, an H200: ``experiments/results/gpu_h200``), so Lightning costs
well under the 5 % of a step that would have justified a bare loop (``experiments/bench.py --only stacked`` times
the launcher's path against the bare loop).

- ``model``: ``StackedPolicy``, N members' policies as ``[N, out, in]`` weights, zero-padded to the group's largest
  input and action sizes (padded action dimensions are masked out of the likelihood), built from and unstacked
  back into each member's own ``WeightedBC``.
- ``draws``: all of a group's randomness (batch indices, CWBC's raised rows and dropout masks), ``exact`` (each
  member draws as its single run would) or ``fast`` (one generator for the group).
- ``group``: build a group from its members' configs with the single-run builder; ``StackedGroup``, the
  LightningModule whose step trains every member (the sum over members of each member's mean loss, one Adam),
  fitted, checkpointed and resumed by the single run's Trainer.
- ``record``: what each member leaves in its run directory, as a single run does.
- ``clock``: the launch's one deadline (training, evaluation and writing end before it), each group's measured
  step time and its timing record.
- ``launch``: the stacked Hydra launcher's work (``hydra_plugins/wsrl_stacked`` is its thin plugin).
"""
