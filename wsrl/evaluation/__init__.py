"""Looking at a trained policy: its D4RL normalized scores (``scores``), videos (``video``), RvS-R's
return-conditioning curve (``conditioning``) and a run's figures and media (``media``);
``python -m wsrl.evaluation`` scores a checkpoint."""
