#!/usr/bin/env bash
# One call of the lent GPU machine, as it comes (PyTorch and Lightning there; MuJoCo, Gymnasium, Minari and Hydra
# carried as wheels in .whl/, made by `make gpu-wheels`):
#   1. install the wheels into $SITE (/tmp/site);
#   2. generate the datasets the sweep needs on all cores (several datasets side by side, 2 rollout processes each);
#   3. run the sweep command given after `--` under a wall-clock deadline (SIGTERM, then SIGKILL after GRACE_S);
#   4. pack every run's results.json, failed.json, run_config.json, config.yaml, metrics and logs (no checkpoints)
#      into $OUT/results.tar.gz, with $OUT/timing.json (seconds per phase) and $OUT/log.txt (everything printed).
# Step 4 runs whatever happened before it (a trap), so a partial sweep still comes back.
#
#   experiments/gpu.sh [--smoke] [--size full|small] [--datasets "hopper/medium walker2d/medium_expert ..."]
#                      [-- python -m wsrl.train -m experiment=table2 hydra/launcher=stacked ...]
#
# In the sweep command `{SWEEP_S}` is replaced by the seconds the sweep has before its SIGTERM (for a launcher's
# own deadline), a leading `python`/`python3` by $PYTHON, and a wsrl.train command gets wandb.mode=disabled and
# trainer.progress_bar=false unless it sets them (W&B is not installed there). --smoke: small datasets (a tenth of
# the size) and, without a command, a 2 x 2 sweep of a few hundred steps (with hydra/launcher=stacked where that
# plugin exists).
# Settings (environment): PYTHON (python3), OUT (./gpu-out), DEADLINE_S (570: the whole script, from its start),
# GRACE_S (20), PACK_S (20: kept for step 4), SITE (/tmp/site), MINARI_DATASETS_PATH (/tmp/minari),
# DATAGEN_JOBS (cores / 2 datasets at once), DATASETS (default: the nine; none: none), SKIP_INSTALL=1 (no
# wheels), PACK_DIRS (more folders to pack, beside multirun/ and outputs/).
set -u -o pipefail

T0=$(date +%s.%N)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/gpu-out}
DEADLINE_S=${DEADLINE_S:-570}
GRACE_S=${GRACE_S:-20}
PACK_S=${PACK_S:-20}
SITE=${SITE:-/tmp/site}
CORES=$(nproc)
DATAGEN_JOBS=${DATAGEN_JOBS:-$(( CORES / 2 ))}
[ "$DATAGEN_JOBS" -ge 1 ] 2>/dev/null || DATAGEN_JOBS=1
export MINARI_DATASETS_PATH=${MINARI_DATASETS_PATH:-/tmp/minari}
export WANDB_MODE=disabled PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HYDRA_FULL_ERROR=1
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"

SIZE=full
SMOKE=0
DATASETS=${DATASETS:-}
CMD=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1; SIZE=small ;;
    --size) SIZE=$2; shift ;;
    --datasets) DATASETS=$2; shift ;;
    --) shift; CMD=("$@"); break ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ ${#CMD[@]} -eq 0 ] && [ "$SMOKE" = 1 ]; then
  CMD=(python -m wsrl.train -m experiment=quick "env=hopper_medium,walker2d_medium" "method=bc,rvs_r" seed=0
       trainer.max_steps=300 trainer.checkpoint_every_steps=0 eval.episodes=5 generate_if_missing=false
       wandb.mode=disabled hydra.sweep.dir=multirun/gpu-smoke)
  [ -d hydra_plugins/wsrl_stacked ] && CMD+=(hydra/launcher=stacked)
  DATASETS=${DATASETS:-hopper/medium walker2d/medium}
fi
[ "$DATASETS" = none ] && DATASETS=" "
[ -z "$DATASETS" ] && for r in halfcheetah hopper walker2d; do
  for q in medium medium_replay medium_expert; do DATASETS+="$r/$q "; done
done

mkdir -p "$OUT" || exit 1
LOG=$OUT/log.txt
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
trap '' PIPE  # if whatever reads our output goes away, keep going (to the pack) rather than die on the next line
WORK=$(mktemp -d)  # per-phase times, the pack's staging area

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
left() { awk -v t0="$T0" -v d="$DEADLINE_S" -v b="$(now)" 'BEGIN { printf "%d", t0 + d - b }'; }
say() { echo "[gpu.sh $(since "$T0") s] $*"; }
record() { echo "$1 $2" >>"$WORK/timing"; }  # phase seconds

PACKED=0
pack() {
  [ "$PACKED" = 1 ] && return
  PACKED=1
  local t
  t=$(now)
  say "packing results"
  # every run's small files, not checkpoints or W&B folders; dataset metadata beside them
  find multirun outputs ${PACK_DIRS:-} \( -name checkpoints -o -name wandb -o -name .hydra \) -prune -o -type f \
    \( -name '*.json' -o -name '*.csv' -o -name '*.yaml' -o -name '*.log' -o -name '*.txt' -o -name '*.md' \) \
    -size -8M -print 2>/dev/null | sort >"$WORK/files"
  mkdir -p "$WORK/stage/datasets"
  (cd "$MINARI_DATASETS_PATH" 2>/dev/null && find . -name metadata.json -print0 | xargs -0 -r cp --parents -t "$WORK/stage/datasets") || true
  tar czf "$OUT/results.tar.gz" -C "$ROOT" -T "$WORK/files" -C "$WORK/stage" datasets 2>&1 | head -5
  if [ "$(stat -c %s "$OUT/results.tar.gz")" -gt $(( 15 * 1024 * 1024 )) ]; then  # a file comes back up to 16 MiB
    say "results.tar.gz is over 15 MiB: packing again without the metrics (.csv)"
    grep -v '\.csv$' "$WORK/files" >"$WORK/files.small"
    mv "$WORK/files.small" "$WORK/files"
    tar czf "$OUT/results.tar.gz" -C "$ROOT" -T "$WORK/files" -C "$WORK/stage" datasets 2>&1 | head -5
  fi
  say "$(grep -c 'results\.json$' "$WORK/files") results.json, $(grep -c 'failed\.json$' "$WORK/files") failed.json," \
    "$(wc -l <"$WORK/files") files -> $OUT/results.tar.gz ($(du -h "$OUT/results.tar.gz" | cut -f1))"
  record pack "$(since "$t")"
}

finish() {
  local rc=$?
  trap '' TERM INT
  pack
  record total "$(since "$T0")"
  {
    printf '{\n  "exit_code": %s, "size": "%s", "cores": %s, "deadline_s": %s,\n  "phases": {' "$rc" "$SIZE" \
      "$CORES" "$DEADLINE_S"
    awk 'NR > 1 { printf "," } { printf "\n    \"%s\": %s", $1, $2 }' "$WORK/timing"
    printf '\n  }\n}\n'
  } >"$OUT/timing.json"
  say "done (exit $rc): $OUT/results.tar.gz, $OUT/timing.json, $OUT/log.txt"
  rm -rf "$WORK"
  exec >&- 2>&-
  wait "$TEE_PID" 2>/dev/null
  exit "$rc"
}
trap finish EXIT
trap 'say "SIGTERM: packing what there is"; exit 143' TERM
trap 'say "SIGINT: packing what there is"; exit 130' INT

say "root $ROOT, $CORES cores, python $PY, size $SIZE, deadline ${DEADLINE_S} s, OUT $OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || say "no nvidia-smi"

# 1. wheels ---------------------------------------------------------------------------------------------------
t=$(now)
if [ "${SKIP_INSTALL:-0}" != 1 ] && compgen -G ".whl/*.whl" >/dev/null; then
  say "installing $(ls .whl/*.whl | wc -l) wheels into $SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || { say "wheel install failed"; exit 3; }
else
  say "no wheels installed (SKIP_INSTALL=${SKIP_INSTALL:-0}, $(compgen -G '.whl/*.whl' | wc -l) in .whl/)"
fi
"$PY" - <<'EOF' || { say "imports failed"; exit 3; }
import importlib
for name in ("torch", "lightning", "numpy", "mujoco", "gymnasium", "minari", "hydra", "omegaconf", "wsrl"):
    m = importlib.import_module(name)
    print(f"  {name} {getattr(m, '__version__', '')} ({m.__file__})")
import torch
print(f"  cuda: {torch.cuda.is_available()}" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
EOF
record install "$(since "$t")"

# 2. datasets ---------------------------------------------------------------------------------------------------
t=$(now)
# phase a: medium, expert and medium_replay side by side; phase b: medium_expert (their concatenation)
read -r -a WANT <<<"$DATASETS"
missing=$("$PY" - "$SIZE" "${WANT[@]}" <<'EOF'
import sys
from wsrl.datasets.store import exists_locally
from wsrl.datasets.suite import generated_id
size, want = sys.argv[1], sys.argv[2:]
need = []
for item in want:
    robot, quality = item.split("/")
    parts = ["medium", "expert", "medium_expert"] if quality == "medium_expert" else [quality]
    for q in parts:
        if f"{robot}/{q}" not in need and not exists_locally(generated_id(robot, q, size)):
            need.append(f"{robot}/{q}")
# the 1M-step rollouts first, then the replays, longest first (hopper's is 380k steps, walker2d's 280k, halfcheetah's
# 60k): with 8 slots the six big ones and two replays start at once and the last replay ends before the big ones
order = {"medium": 0, "expert": 0, "medium_replay": 1, "medium_expert": 2}
replay = {"hopper": 0, "walker2d": 1, "halfcheetah": 2}
need.sort(key=lambda item: (order[item.split("/")[1]], replay.get(item.split("/")[0], 3)))
print(" ".join(need))
EOF
) || { say "cannot list the datasets"; exit 4; }
say "datasets wanted: ${WANT[*]}; to generate: ${missing:-none} (MINARI_DATASETS_PATH=$MINARI_DATASETS_PATH," \
  "$DATAGEN_JOBS at once)"

gen() {  # robot/quality: one dataset, its time recorded
  local item=$1 s r
  s=$(now)
  OMP_NUM_THREADS=1 timeout --kill-after=5 "$(( $(left) - PACK_S - GRACE_S > 1 ? $(left) - PACK_S - GRACE_S : 1 ))" \
    "$PY" -m wsrl.datasets generate "${item%/*}" "${item#*/}" --size "$SIZE" --workers 2 2>&1 \
    | stdbuf -oL tr '\r' '\n' | grep --line-buffered -v -e '%|' -e '^ *$' -e 'warnings.warn' | sed -u "s|^|  [$item] |"
  r=${PIPESTATUS[0]}
  record "datagen/$item" "$(since "$s")"
  [ "$r" = 0 ] || echo "  [$item] FAILED (exit $r)"
  return "$r"
}
run_batch() {  # items: at most DATAGEN_JOBS at once (waits name their jobs: a bare wait would wait for the log's tee)
  local item pids=() alive p
  for item in "$@"; do
    while alive=(); for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
      [ ${#alive[@]} -ge "$DATAGEN_JOBS" ]; do
      wait -n "${alive[@]}" 2>/dev/null
    done
    gen "$item" &
    pids+=($!)
  done
  wait "${pids[@]}"
}
first=() second=()
for item in $missing; do
  if [ "${item#*/}" = medium_expert ]; then second+=("$item"); else first+=("$item"); fi
done
[ ${#first[@]} -gt 0 ] && run_batch "${first[@]}"
[ ${#second[@]} -gt 0 ] && run_batch "${second[@]}"
record datagen "$(since "$t")"
say "datasets done in $(since "$t") s"

# 3. the sweep --------------------------------------------------------------------------------------------------
if [ ${#CMD[@]} -eq 0 ]; then
  say "no sweep command (pass one after --)"
  exit 0
fi
t=$(now)
SWEEP_S=$(( $(left) - PACK_S - GRACE_S ))
if [ "$SWEEP_S" -lt 10 ]; then
  say "only $SWEEP_S s left for the sweep: skipped"
  exit 5
fi
case "${CMD[0]}" in python|python3) CMD[0]=$PY ;; esac
CMD=("${CMD[@]//\{SWEEP_S\}/$SWEEP_S}")
if [[ " ${CMD[*]} " == *" wsrl.train "* ]]; then
  # W&B is not installed there (an explicit wandb.mode wins over WANDB_MODE), and progress bars only fill the log
  [[ " ${CMD[*]}" == *" wandb.mode="* ]] || CMD+=(wandb.mode=disabled)
  [[ " ${CMD[*]}" == *" trainer.progress_bar="* ]] || CMD+=(trainer.progress_bar=false)
fi
say "sweep, SIGTERM in $SWEEP_S s: ${CMD[*]}"
timeout --kill-after="$GRACE_S" "$SWEEP_S" "${CMD[@]}" &
SWEEP_PID=$!
trap 'say "SIGTERM: stopping the sweep"; kill -TERM $SWEEP_PID 2>/dev/null; wait $SWEEP_PID; exit 143' TERM
wait "$SWEEP_PID"
rc=$?
record sweep "$(since "$t")"
case $rc in
  0) say "sweep finished in $(since "$t") s" ;;
  124|137) say "sweep stopped at the deadline (exit $rc) after $(since "$t") s: rerun the same command to resume" ;;
  *) say "sweep failed (exit $rc) after $(since "$t") s" ;;
esac
exit "$rc"
