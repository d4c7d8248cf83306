cd /work/main
export OMP_NUM_THREADS=1
for c in red-hair white-hair pale-skin dark-skin; do
  p="photo of a person with ${c/-/ }"
  /usr/bin/time -v taskset -c 0 avatarstudio demo --output outputs/demo_ff --prompt "$p" > outputs/demo_ff/$c.log 2>&1
  cp outputs/demo_ff/scores.md outputs/demo_ff/scores_$c.md; cp outputs/demo_ff/scores.json outputs/demo_ff/scores_$c.json
done
echo done > outputs/demo_ff/prompts.done
