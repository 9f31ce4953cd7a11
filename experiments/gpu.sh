#!/usr/bin/env bash
# One call of the lent GPU machine (PyTorch and Lightning there; MuJoCo, Gymnasium, Minari and Hydra carried as
# wheels in .whl/, made by `make gpu-wheels`), all of it before DEADLINE_S seconds from the start:
#   1. install the wheels into $SITE, once per wheel set (a marker file there names the set: a warm machine skips it);
#   2. make the datasets the sweep reads and lacks, on all cores (python -m wsrl.running.datasets --jobs <cores>);
#   3. run the sweep with the device's defaults, unless the command sets them: no W&B, no progress bars, no dataset
#      made inside the launcher; for hydra/launcher=stacked a checkpoint only at the deadline or the end,
#      cores - 2 evaluation workers and hydra.launcher.deadline_s = what is left less PACK_S and GRACE_S, so that
#      the launcher ends in time (SIGTERM, then SIGKILL, only back it up);
#   4. pack $OUT/<archive>/ (gpu_<date>_<robots>, or ARCHIVE): runs.tar.gz (each run's results.json, failed.json,
#      run_config.json, config.yaml and metrics, each group's time record; no checkpoints; extracted under
#      multirun/ by experiments/render.sh), datasets.txt (the datasets' SHA-256), README.md (a row per group: card,
#      precision, N, ms per step), timing.json (seconds per phase) and log.txt: again as soon as a group finishes
#      (checked every 5 s), and at the end whatever happened.
#
#   experiments/gpu.sh [--smoke] [-- python -m wsrl.train -m experiment=table2 hydra/launcher=stacked ...]
#
# --smoke: without a command, a 2 x 2 stacked sweep of 300 steps on the small hopper and walker2d medium sets.
# Settings (environment): PYTHON (python3), OUT (./gpu-out), DEADLINE_S (570), GRACE_S (20: the sweep's start and
# exit), PACK_S (10: kept for step 4), SITE (/tmp/site), WHEELS (.whl), SKIP_INSTALL=1 (no wheels),
# MINARI_DATASETS_PATH (/tmp/minari), RUNS_DIR (multirun: the sweeps packed), ARCHIVE.
set -u -o pipefail

T0=$(date +%s.%N)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
PY=${PYTHON:-python3} OUT=${OUT:-$ROOT/gpu-out} SITE=${SITE:-/tmp/site} WHEELS=${WHEELS:-$ROOT/.whl}
DEADLINE_S=${DEADLINE_S:-570} GRACE_S=${GRACE_S:-20} PACK_S=${PACK_S:-10} RUNS_DIR=${RUNS_DIR:-$ROOT/multirun}
CORES=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc would honour them
export MINARI_DATASETS_PATH=${MINARI_DATASETS_PATH:-/tmp/minari}
export WANDB_MODE=disabled PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HYDRA_FULL_ERROR=1
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"

CMD=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) CMD=(python -m wsrl.train -m experiment=quick env=hopper_medium,walker2d_medium method=bc,rvs_r seed=0
                  trainer.max_steps=300 eval.episodes=5 hydra/launcher=stacked hydra.sweep.dir=multirun/gpu-smoke) ;;
    --) shift; CMD=("$@"); break ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

mkdir -p "$OUT" || exit 1
LOG=$OUT/log.txt
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
trap '' PIPE  # if whatever reads our output goes away, keep going (to the pack) rather than die on the next line
WORK=$(mktemp -d)  # per-phase times, the datasets' hashes, the list of packed files
ARCHIVE=${ARCHIVE:-}
RC=

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
left() { awk -v t0="$T0" -v d="$DEADLINE_S" -v b="$(now)" -v r="${1:-0}" 'BEGIN { printf "%d", t0 + d - b - r }'; }
say() { echo "[gpu.sh $(since "$T0") s] $*"; }
record() { echo "$1 $2" >>"$WORK/timing"; }  # phase seconds
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
CARD=${CARD:-cpu}

pack() {  # $OUT/$ARCHIVE, each file written aside and moved into place
  local dir=$OUT/${ARCHIVE:-gpu_$(date -u +%F)_sweep} list=$WORK/files.$BASHPID
  mkdir -p "$dir"
  (cd "$RUNS_DIR" 2>/dev/null && find . \( -name checkpoints -o -name wandb -o -name .hydra \) -prune -o -type f \
    \( -name results.json -o -name failed.json -o -name run_config.json -o -name config.yaml -o -name metrics.csv \
    -o -path '*/.stacked/*.json' \) -print | sort) >"$list"
  tar -C "$RUNS_DIR" -czf "$dir/runs.$BASHPID" -T "$list" 2>/dev/null && mv "$dir/runs.$BASHPID" "$dir/runs.tar.gz"
  cp "$WORK/datasets.txt" "$dir/datasets.txt" 2>/dev/null
  { echo "# $(basename "$dir")"; echo; echo "\`${CMD[*]}\` on $CARD, $CORES cores"; echo
    echo "| date | card | precision | N | ms per step | steps | seconds | status |"; echo "|---|---|---|---|---|---|---|---|"
    grep '/\.stacked/' "$list" | sed "s|^\.|$RUNS_DIR|" | xargs -r "$PY" -c 'import json, sys
for path in sys.argv[1:]:
    r = json.load(open(path))
    r["phases"] = ", ".join(f"{k} {v}" for k, v in r["seconds"].items())
    print("| {date} | {card} | {precision} | {members} | {ms_per_step} | {steps} of {max_steps} | {phases} | "
          "{status:.90} |".format(**r))'
  } >"$dir/README.$BASHPID" && mv "$dir/README.$BASHPID" "$dir/README.md"
  { printf '{"exit_code": %s, "card": "%s", "cores": %s, "deadline_s": %s, "phases": {' "${RC:-null}" "$CARD" "$CORES" \
      "$DEADLINE_S"
    awk 'NR > 1 { printf ", " } { printf "\"%s\": %s", $1, $2 }' "$WORK/timing" 2>/dev/null; printf '}}\n'
  } >"$dir/timing.$BASHPID" && mv "$dir/timing.$BASHPID" "$dir/timing.json"
  cp "$LOG" "$dir/log.txt"
  rm -f "$list"
}
repack() {  # every finished group packed at once: again whenever the set of run results and group records changes
  local seen='' files
  while sleep 5; do
    files=$(find "$RUNS_DIR" \( -name results.json -o -name failed.json -o -path '*/.stacked/*.json' \) 2>/dev/null | sort)
    if [ "$files" != "$seen" ]; then seen=$files; pack; fi
  done
}
finish() {
  RC=$?
  trap '' TERM INT
  [ -n "${WATCH_PID:-}" ] && kill "$WATCH_PID" 2>/dev/null && wait "$WATCH_PID" 2>/dev/null
  record total "$(since "$T0")"
  pack
  say "done (exit $RC): $OUT/${ARCHIVE:-gpu_$(date -u +%F)_sweep}/"
  rm -rf "$WORK"
  exec >&- 2>&-
  wait "$TEE_PID" 2>/dev/null
  exit "$RC"
}
trap finish EXIT
trap 'say "SIGTERM: packing what there is"; exit 143' TERM
trap 'say "SIGINT: packing what there is"; exit 130' INT
say "root $ROOT, $CORES cores, $CARD, python $PY, deadline $DEADLINE_S s, OUT $OUT"

# 1. wheels, once per set ---------------------------------------------------------------------------------------
t=$(now)
if [ "${SKIP_INSTALL:-0}" != 1 ] && compgen -G "$WHEELS/*.whl" >/dev/null; then
  SET=$(cd "$WHEELS" && sha256sum -- *.whl | sha256sum | cut -c1-16)
  if [ "$(cat "$SITE/.wsrl-wheels" 2>/dev/null)" = "$SET" ]; then
    say "wheel set $SET already installed in $SITE"
  else
    say "installing $(compgen -G "$WHEELS/*.whl" | wc -l) wheels (set $SET) into $SITE"
    rm -f "$SITE/.wsrl-wheels"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      "$WHEELS"/*.whl && echo "$SET" >"$SITE/.wsrl-wheels" || { say "wheel install failed"; exit 3; }
  fi
fi
"$PY" -c 'import importlib
for name in ("torch", "lightning", "numpy", "mujoco", "gymnasium", "minari", "hydra", "wsrl"):
    print("  ", name, getattr(importlib.import_module(name), "__version__", ""))' || { say "imports failed"; exit 3; }
record install "$(since "$t")"
[ ${#CMD[@]} -eq 0 ] && { say "no sweep command (pass one after --, or --smoke)"; exit 0; }
case "${CMD[0]}" in python|python3) CMD[0]=$PY ;; esac

# 2. the datasets the sweep reads -------------------------------------------------------------------------------
t=$(now)
if [[ " ${CMD[*]} " == *" wsrl.train "* ]]; then
  for i in "${!CMD[@]}"; do [ "${CMD[$i]}" = wsrl.train ] && OVERRIDES=("${CMD[@]:$((i + 1))}"); done
  IDS=$("$PY" -m wsrl.running.datasets --list "${OVERRIDES[@]}") || { say "cannot list the sweep's datasets"; exit 4; }
  ROBOTS=$(echo "$IDS" | cut -d/ -f2 | sort -u | paste -sd+)
  ARCHIVE=${ARCHIVE:-gpu_$(date -u +%F)_${ROBOTS:-sweep}}
  say "datasets: $(echo "$IDS" | paste -sd' ')"
  S=$(left $((PACK_S + GRACE_S)))  # seconds left less what the pack and the sweep's start need
  timeout --kill-after=5 "$(( S > 1 ? S : 1 ))" \
    "$PY" -m wsrl.running.datasets --jobs "$CORES" "${OVERRIDES[@]}" || { say "datasets not made (exit $?)"; exit 4; }
  (cd "$MINARI_DATASETS_PATH" && for id in $IDS; do sha256sum "$id"/data/*; done) >"$WORK/datasets.txt"
  add() { [[ " ${CMD[*]}" == *" ${1%%=*}="* ]] || CMD+=("$1"); }  # a device default the command does not set
  add wandb.mode=disabled; add trainer.progress_bar=false; add generate_if_missing=false
  if [[ " ${CMD[*]} " == *" hydra/launcher=stacked "* ]]; then
    add trainer.checkpoint_every_steps=0; add hydra.launcher.eval_workers=$(( CORES > 2 ? CORES - 2 : 0 ))
    S=$(left $((PACK_S + GRACE_S)))
    add hydra.launcher.deadline_s=$(( S > 1 ? S : 1 ))
  fi
fi
record datasets "$(since "$t")"

# 3. the sweep --------------------------------------------------------------------------------------------------
t=$(now)
SWEEP_S=$(left $((PACK_S + 5)))
[ "$SWEEP_S" -lt 10 ] && { say "only $SWEEP_S s left for the sweep: skipped"; exit 5; }
repack &
WATCH_PID=$!
say "sweep, SIGTERM in $SWEEP_S s: ${CMD[*]}"
timeout --kill-after=5 "$SWEEP_S" "${CMD[@]}" &
SWEEP_PID=$!
trap 'say "SIGTERM: stopping the sweep"; kill -TERM $SWEEP_PID 2>/dev/null; wait $SWEEP_PID; exit 143' TERM
wait "$SWEEP_PID"
rc=$?
record sweep "$(since "$t")"
case $rc in
  0) say "sweep finished in $(since "$t") s" ;;
  75|124|137) say "sweep stopped at the deadline (exit $rc) after $(since "$t") s: the same command resumes it" ;;
  *) say "sweep failed (exit $rc) after $(since "$t") s" ;;
esac
exit "$rc"
