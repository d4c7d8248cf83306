cd /tmp/demo_clone
export OMP_NUM_THREADS=1 PYTHONPATH=/tmp/demo_clone
O=/work/main/outputs/demo_votes/blue
for c in red-hair white-hair pale-skin dark-skin; do
  p="photo of a person with ${c/-/ }"
  /usr/bin/time -v taskset -c 0 avatarstudio demo --output $O --prompt "$p" > $O/../$c.log 2>&1
  cp $O/scores.md $O/../scores_$c.md; cp $O/scores.json $O/../scores_$c.json
done
echo done > $O/../prompts.done
