"""The tables from sweeps: ``python -m wsrl.report multirun/table2 --table 2`` (the CLI in ``__main__``). Modules,
bottom first: ``statistics`` (intervals, tests, rliable), ``tables`` (Markdown, CSV, bar figure), ``weight_mass``
(the weight-mass figure, ``python -m wsrl.report.weight_mass``), ``paper`` (the paper's numbers and each table's
columns and comparisons), ``collect`` (reading sweeps), ``rows`` (a table's rows and aggregates), ``curves``
(learning and conditioning curves), ``upload`` (W&B) and ``write`` (one table's files)."""
