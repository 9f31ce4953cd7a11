"""Putting one run together: refusing a bad command line and reporting failures (``refusals``), the run directory
(``rundir``: identity, lock, stop signals), its damaged files (``damaged``: named in one line and set aside, the
checkpoint to resume from), the typed ``results.json`` (``results``), building the data module, module and Trainer
(``build``) and GPU pinning of sweep workers (``gpus``). The entry point is ``wsrl.train``."""
