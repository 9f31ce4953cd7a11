"""Training a sweep's runs at once: one model whose parameters carry a leading member axis.

    python -m wsrl.train -m hydra/launcher=stacked experiment=table2 device=cuda trainer.matmul_precision=high \
        hydra.launcher.deadline_minutes=8 [hydra.launcher.rng=exact] [hydra.launcher.group_by=robot]

Each member's run directory holds what a single run's holds (``python -m wsrl.report`` reads it unchanged, and its
``checkpoints/last.ckpt`` loads in ``python -m wsrl.evaluation``); ``results.json`` adds a ``stacked`` block
(group, size, slot, rng, precision). The same command resumes a stopped launch and reports finished members.
The launcher drives a bare loop, not a Lightning Trainer: ``experiments/bench.py --only stacked`` prices the
difference (section 9).

- ``model``: ``StackedPolicy``, N members' policies as ``[N, out, in]`` weights, zero-padded to the group's largest
  input and action sizes (padded action dimensions are masked out of the likelihood), built from and unstacked
  back into each member's own ``WeightedBC``.
- ``draws``: all of a group's randomness (batch indices and dropout masks), ``exact`` (each member draws as its
  single run would) or ``fast`` (one generator for the group).
- ``group``: build a group from its members' configs with the single-run builder, train it (the sum over members
  of each member's mean loss, one Adam), checkpoint and resume it.
- ``record``: what each member leaves in its run directory, as a single run does.
- ``launch``: the stacked Hydra launcher's work (``hydra_plugins/wsrl_stacked`` is its thin plugin).
"""
