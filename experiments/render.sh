#!/usr/bin/env bash
# Every table behind experiments/RESULTS.md, in one report generation:
#   bash experiments/render.sh --pack   archive the finished runs of multirun/ into experiments/results/sweeps/
#   bash experiments/render.sh          restore the archived runs under multirun/, render every table into
#                                       experiments/results/
# An archive (experiments/results/sweeps/<sweep>.tar.gz) holds, for every finished run of the sweep, its results.json,
# run_config.json, config.yaml and csv/metrics.csv: what the report reads and what makes a rerun of the sweep skip
# the run; no checkpoints. Each lent-GPU call's runs (experiments/gpu.sh's experiments/results/gpu_<date>_<robots>/
# runs.tar.gz) are restored too, and the paper-budget tables rendered from whatever robots they hold into
# results/paper/ (the others' rows "not run yet"). Restoring adds the runs multirun/ lacks and never overwrites a
# file there; an archive that cannot be read whole is named in one line, and the report names (and leaves out) any
# results.json it cut. A table whose sweeps are missing is skipped, with a line saying which.
# Environment: PYTHON, MULTIRUN (multirun), RUNS (experiments/results/sweeps), GPU_RUNS (experiments/results: its
# gpu_*/runs.tar.gz), OUT (experiments/results), REPS (2000).
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MULTIRUN=${MULTIRUN:-multirun}
RUNS=${RUNS:-experiments/results/sweeps}
GPU_RUNS=${GPU_RUNS:-experiments/results}
OUT=${OUT:-experiments/results}
SWEEPS=(table1_cpu table2_cpu table4_cpu table4_clip5 table5_cpu)
ME=(halfcheetah_medium_expert hopper_medium_expert walker2d_medium_expert)
FIVE=(--seeds 0 1 2 3 4)  # the seeds every column has (Table 2's medium-expert cells have ten)

pack() {  # $1: a sweep under $MULTIRUN; the archive is byte-identical for the same runs (sorted, no timestamps)
  local archive=$RUNS/$1.tar.gz
  (cd "$MULTIRUN" && find "$1" -name results.json -printf '%h\n' | sort | while read -r run; do
    for f in results.json run_config.json config.yaml csv/metrics.csv; do
      if [[ -f $run/$f ]]; then echo "$run/$f"; fi
    done
  done) | tar -C "$MULTIRUN" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - -T - \
    | gzip -n > "$archive.tmp"
  mv "$archive.tmp" "$archive"
  echo "$archive: $(tar -tzf "$archive" | grep -c results.json) runs"
}

if [[ ${1:-} == --pack ]]; then
  mkdir -p "$RUNS"
  for sweep in "${SWEEPS[@]}"; do if [[ -d $MULTIRUN/$sweep ]]; then pack "$sweep"; fi; done
  exit 0
elif [[ $# -gt 0 ]]; then
  echo "error: unknown argument $1 (use --pack, or nothing to render)" >&2
  exit 2
fi
mkdir -p "$MULTIRUN"
for archive in "$RUNS"/*.tar.gz "$GPU_RUNS"/gpu_*/runs.tar.gz; do
  if ! err=$(tar -xzf "$archive" -C "$MULTIRUN" --skip-old-files 2>&1); then  # named in one line; rendering goes on
    echo "damaged: $archive cannot be read whole ($(grep -m1 . <<< "$err")): the tables use the runs restored from" \
      "it, the report names any it cut; restore the archive (git checkout -- $archive) and render again" >&2
  fi
done

report() {  # $1: the output directory, $2: the sweeps (comma-separated), then the report's options
  local out=$1 sweep sweeps dirs=()
  IFS=, read -ra sweeps <<< "$2"
  for sweep in "${sweeps[@]}"; do
    [[ -d $MULTIRUN/$sweep ]] || { echo "skipped: $out ($MULTIRUN/$sweep is missing)"; return 0; }
    dirs+=("$MULTIRUN/$sweep")
  done
  "$PY" -m wsrl.report "${dirs[@]}" "${@:3}" --out "$out" --reps "${REPS:-2000}" > /dev/null
  echo "rendered: $out ${*:3}"
}
report "$OUT/me10" table1_cpu,table2_cpu --table 1 --datasets "${ME[@]}"
report "$OUT/me10" table2_cpu --table 2 --datasets "${ME[@]}"
report "$OUT" table2_cpu --table 2 "${FIVE[@]}"
report "$OUT" table2_cpu --table 3 "${FIVE[@]}"
report "$OUT" table4_cpu,table2_cpu,table5_cpu --table 4 "${FIVE[@]}"
report "$OUT/table4_clip5" table4_clip5 --table 4
report "$OUT/table5" table5_cpu,table2_cpu,table4_cpu --table 5 "${FIVE[@]}"
report "$OUT/paper" table1,table2 --table 1  # the paper's budget, from the lent-GPU calls so far
report "$OUT/paper" table2 --table 2
report "$OUT/paper" table2 --table 3
