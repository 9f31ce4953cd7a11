"""Putting one run together: refusing a bad command line and reporting failures (``refusals``), the run directory
(``rundir``: identity, lock, stop signals), the typed ``results.json`` (``results``), building the data module,
module and Trainer (``build``) and GPU pinning of sweep workers (``gpus``). The entry point is ``wsrl.train``."""
