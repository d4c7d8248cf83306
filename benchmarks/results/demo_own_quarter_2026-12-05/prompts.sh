#!/usr/bin/env bash
# after CI (pgrep .ci/run) ends: the demo's other four prompts, on core $1, from the fresh clone, on the blue-hair demo's folder
core=$1
while pgrep -f "[.]ci/run" > /dev/null; do sleep 15; done
cd /tmp/demo_clone
export OMP_NUM_THREADS=1 PYTHONPATH=/tmp/demo_clone
O=/work/main/outputs/demo_own_quarter/blue
for c in red-hair white-hair pale-skin dark-skin; do
  p="photo of a person with ${c/-/ }"
  date
  /usr/bin/time -v taskset -c $core avatarstudio demo --output $O --prompt "$p" > $O/../$c.log 2>&1
  cp $O/scores.md $O/../scores_$c.md; cp $O/scores.json $O/../scores_$c.json
done
date
echo DEMO-PROMPTS-DONE
