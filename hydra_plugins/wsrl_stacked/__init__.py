"""``hydra/launcher=stacked``: train a sweep's runs as stacked models (``wsrl.stacked``)."""
