"""wsrl: weighted sampling for offline RL on imbalanced datasets."""

__version__ = "0.1.0"
