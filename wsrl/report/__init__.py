"""The tables from sweeps: ``python -m wsrl.report multirun/table2 --table 2``. Collection of runs, their
statistics, rendering and plots, and the weight-mass figure (``python -m wsrl.report.weight_mass``)."""
