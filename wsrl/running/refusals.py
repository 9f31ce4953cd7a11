"""The command line around a run: refuse a bad command line before Hydra starts, and end a failed job in one line.

``check_command_line`` runs before ``@hydra.main`` (``python -m wsrl.train`` and the ``wsrl-train`` script alike):
Hydra's own messages span several lines and would only come after it has made an output directory.
``report_failure`` is what a job does when ``train`` raises: the line to print, the exit status, or in a sweep
the ``failed.json`` that lets the other jobs go on.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shlex
import sys
from pathlib import Path

from wsrl.common.files import WriteError
from wsrl.core.config import CONF_DIR, ConfigError
from wsrl.core.data import DataError
from wsrl.core.module import NonFiniteLossError
from wsrl.datasets.store import DatasetError
from wsrl.running.damaged import DamagedFile
from wsrl.running.rundir import RunInterrupted, RunLockedError, discard_if_empty, write_failed

log = logging.getLogger("wsrl")
REFUSALS = (ConfigError, DataError, DatasetError, DamagedFile, NonFiniteLossError, WriteError)  # one line, no traceback


def check_command_line(args: list[str]) -> None:
    """Compose the configs of a command line as Hydra will (each value of a sweep once) and refuse a bad
    override in one line, before any output directory exists: Hydra's own messages span several lines and
    suggest `+key=` for a mistyped key, which ``validate`` then refuses. Other Hydra flags than ``-m`` are
    left to Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in args):
        return
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    except OverrideParseException as err:
        sys.exit(f"error: cannot parse the overrides: {str(err).splitlines()[0]}")
    values = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
              else [o.input_line] for o in parsed]
    base = [choices[0] for choices in values]
    runs = [base] + [base[:i] + [v] + base[i + 1:] for i, choices in enumerate(values) for v in choices[1:]]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for overrides in runs:
            try:
                compose("train", overrides=overrides)
            except MissingConfigException as err:  # an unknown group option: name the valid ones
                lines = str(err).splitlines()
                listed = next((i for i, line in enumerate(lines) if line.startswith("Available options")), len(lines))
                options = [line.strip() for line in itertools.takewhile(lambda x: x.startswith("\t"),
                                                                        lines[listed + 1:])]
                what = lines[0].removeprefix("In 'train': ").rstrip(".")
                if not options and "hydra/launcher" in what:  # the SLURM preset needs its Hydra plugin
                    sys.exit(f"error: {what}: install the launcher plugins with `pip install -e '.[cluster]'`")
                sys.exit(f"error: {what}; options: {', '.join(options)}")
            except (HydraException, OmegaConfBaseException) as err:
                cause = str(err.__cause__).splitlines()[0] if err.__cause__ else ""
                what = str(err).splitlines()[0].rstrip(".")
                sys.exit(f"error: {what}{': ' + cause if cause else ''} (see `python -m wsrl.train --cfg job`)")


def report_failure(err: Exception, run_dir: Path, sweep: bool, overrides: list[str]) -> float:
    """End a job that raised ``err``. A stop signal prints how to resume (after submitit's requeue where submitit
    sent it) and exits 128 + the signal; a directory held by another process is refused without writing there; in
    a sweep any other failure is logged and recorded in ``failed.json`` and the job returns NaN so the others go
    on; a single run's refusal (``REFUSALS``) exits in one line, leaving no empty directory. Anything else
    propagates with its traceback."""
    if (wandb := sys.modules.get("wandb")) is not None and wandb.run is not None:
        wandb.finish(exit_code=1)  # or the next job in this worker would log into the failed run
    if isinstance(err, RunInterrupted):
        again = "the same sweep" if sweep else "python -m wsrl.train " + " ".join(map(shlex.quote, sys.argv[1:]))
        print(f"{err}; to resume, run {again}", file=sys.stderr, flush=True)
        if err.requeue is not None:
            err.requeue(err.signum, None)  # submitit requeues the job (same command, same directory) and exits
        sys.exit(err.exit_code)
    if isinstance(err, RunLockedError):  # the directory is another process's: write nothing there
        print(f"error: {err}", file=sys.stderr, flush=True)
        if sweep:
            return float("nan")
        sys.exit(1)
    if sweep:
        log.error("job failed: %s: %s", type(err).__name__, err)
        with contextlib.suppress(WriteError):  # a full disk: the error line above is the record
            write_failed(run_dir, str(err), type(err).__name__, overrides)
        return float("nan")
    discard_if_empty(run_dir)
    if isinstance(err, REFUSALS):
        sys.exit(f"error: {err}")
    raise err
