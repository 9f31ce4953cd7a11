"""Behaviour policies: the online RL agents whose actor snapshots generate the dataset suite.

Bottom first: ``locations`` (the shipped policies, the training history, the replay-buffer cache), ``learners``
(the stable-baselines3 algorithms and their settings), ``actors`` (the snapshots' actors without SB3: saved, loaded,
scored), ``training`` (one resumable run), ``selection`` (medium and expert chosen and shipped), ``plots`` (the
training curves) and ``__main__`` (``python -m wsrl.datasets.behavior {train,choose,pilot,plot}``).
"""
