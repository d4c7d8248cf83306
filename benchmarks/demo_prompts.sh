#!/usr/bin/env bash
# More prompts on a finished demo's folder (its capture, recon and personalisation reused), one after another on one
# core, with this checkout's code (e.g. a fresh clone) ahead of any installed copy; each prompt's log, time and
# scores are kept beside the folder (<prompt>.log, scores_<prompt>.md / .json).
#
#   benchmarks/demo_prompts.sh <core> <demo folder> red-hair white-hair pale-skin dark-skin
set -euo pipefail
core=$1 folder=$(realpath "$2"); shift 2
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export OMP_NUM_THREADS=1 PYTHONPATH=$repo
for c in "$@"; do
  date
  /usr/bin/time -v taskset -c "$core" avatarstudio demo --output "$folder" --prompt "photo of a person with ${c/-/ }" \
    > "$folder/../$c.log" 2>&1
  cp "$folder/scores.md" "$folder/../scores_$c.md"; cp "$folder/scores.json" "$folder/../scores_$c.json"
done
date
