# The demo with each hair and skin prompt of the suite, on the demo folder of today's growth (its recon and
# personalisation reused); each prompt's scores copied out before the next overwrites them.
cd /work/main
D=outputs/demo_growth
for p in "pale skin" "red hair" "dark skin" "white hair" "green skin"; do
  s=$(echo "$p" | tr ' ' '-')
  mkdir -p outputs/demo_prompts/$s
  /usr/bin/time -v taskset -c 1 avatarstudio demo --output $D --prompt "photo of a person with $p" > outputs/demo_prompts/$s/demo.log 2>&1
  cp $D/scores.json $D/scores.md $D/summary.json $D/grid.png outputs/demo_prompts/$s/ 2>/dev/null
done
