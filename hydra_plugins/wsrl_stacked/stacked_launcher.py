"""The stacked Hydra launcher: composes each job's config as Hydra's basic launcher does, then hands the whole
sweep to ``wsrl.stacked.launch``, which groups the jobs and trains each group as one model.

Hydra finds launchers only in the ``hydra_plugins`` namespace package, hence this thin module (without
``from __future__ import annotations``: Hydra loads it outside ``sys.modules``, where dataclasses cannot resolve
string annotations). Options (``hydra.launcher.*``) are ``wsrl.stacked.launch.Options``'s fields.
"""

import copy
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)


@dataclass
class StackedLauncherConf:
    _target_: str = "hydra_plugins.wsrl_stacked.stacked_launcher.StackedLauncher"
    max_group: int = 180  # the most members one stacked model holds
    group_by: str = "all"  # all | robot | dataset
    rng: str = "fast"  # fast (one generator per group) | exact (each member draws as its single run would)
    eval_workers: int = 0  # evaluation worker processes for group evaluation (0: in this process)
    deadline_s: float = 0.0  # seconds the launch has from its start, training, evaluation and writing (0: none)
    compile: bool = False  # torch.compile the fast step's forward and backward (rng=fast only)


ConfigStore.instance().store(group="hydra/launcher", name="stacked", node=StackedLauncherConf, provider="wsrl")


class StackedLauncher(Launcher):
    def __init__(self, **options) -> None:
        from wsrl.core.config import ConfigError
        from wsrl.stacked.launch import Options

        self.started = time.time()  # the deadline counts from here, before the jobs are composed
        try:
            self.options = Options(**options)
        except ConfigError as err:
            sys.exit(f"error: {err}")
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context

    def compose(self, overrides: Sequence[str], idx: int) -> tuple[DictConfig, DictConfig, Path]:
        """The job's full config, its task config (without ``hydra``) and its run directory, as ``run_job``
        makes them."""
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        HydraConfig.instance().set_config(sweep_config)
        run_dir = Path(os.path.abspath(os.path.join(str(OmegaConf.select(sweep_config, "hydra.sweep.dir")),
                                                    str(OmegaConf.select(sweep_config, "hydra.sweep.subdir")))))
        task_cfg = copy.deepcopy(sweep_config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
            if task_cfg.wandb.group is None:
                task_cfg.wandb.group = task_cfg.name  # one W&B group per sweep, as wsrl.train's sweeps
        return sweep_config, task_cfg, run_dir

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from wsrl.stacked.launch import Job, launch

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs as stacked groups")
        composed, jobs = [], []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            sweep_config, task_cfg, run_dir = self.compose(overrides, idx)
            composed.append((overrides, sweep_config, task_cfg, run_dir))
            jobs.append(Job(task_cfg, run_dir, list(overrides)))
        scores = launch(jobs, self.options, sweep_dir.resolve(), self.started)
        return [JobReturn(overrides=list(overrides), cfg=task_cfg, hydra_cfg=sweep_config, working_dir=os.getcwd(),
                          task_name=sweep_config.hydra.job.name, status=JobStatus.COMPLETED, _return_value=score)
                for (overrides, sweep_config, task_cfg, _), score in zip(composed, scores, strict=True)]
