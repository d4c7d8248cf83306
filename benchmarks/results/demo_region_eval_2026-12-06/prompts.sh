#!/usr/bin/env bash
# The demo's other hair and skin prompts, on the blue-hair demo's folder (its capture, recon and personalisation
# reused), from the fresh clone in /tmp/demo_clone, pinned to core $1; prompts given after the core.
core=$1; shift
cd /tmp/demo_clone
export OMP_NUM_THREADS=1 PYTHONPATH=/tmp/demo_clone
O=/work/main/outputs/demo_v5/blue
for c in "$@"; do
  date
  /usr/bin/time -v taskset -c "$core" avatarstudio demo --output $O --prompt "photo of a person with ${c/-/ }" \
    > $O/../$c.log 2>&1
  cp $O/scores.md $O/../scores_$c.md; cp $O/scores.json $O/../scores_$c.json
done
date
echo DEMO-PROMPTS-DONE
