"""The sections of ``make bench``; ``experiments/bench.py`` is their command line (see its docstring)."""
