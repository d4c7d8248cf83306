#!/usr/bin/env bash
# The held-out identity of 2026-12-05 (synth seed 7) made, reconstructed, edited with the fast preset's defaults
# (red hair, then dark skin: its skin is tan, like blue-long-tan's, the suite's one short edit) and scored,
# pinned to core $1 with one thread. Waits for the process given as $2 (a pid; 999999 for none); the prompts to edit
# follow (default: red-hair dark-skin). The capture and recon are made only when missing.
#   commands.sh 1 999999 dark-skin
set -e
core=$1; wait_pid=${2:-999999}; shift 2 || true
names=${*:-red-hair dark-skin}
while kill -0 "$wait_pid" 2>/dev/null; do sleep 20; done
cd "$(git rev-parse --show-toplevel)"
N=outputs/new_identity
R=benchmarks/results/new_identity_2026-12-07
export OMP_NUM_THREADS=1
T="taskset -c $core"
date
[ -f $N/capture/transforms.json ] || $T avatarstudio synth --output $N/capture --random-identity --seed 7 --num-cameras 8 --resolution 64 --no-progress
[ -f $N/runs/grey-short-tan/avatarstudio-recon-cpu/recon/config.yml ] || $T ns-train avatarstudio-recon-cpu --data $N/capture --output-dir $N/runs --experiment-name grey-short-tan --timestamp recon --viewer.quit-on-train-completion True
date
for name in $names; do
  prompt="photo of a person with ${name/-/ }"
  $T ns-train avatarstudio-edit-fast --data $N/capture --load-dir $N/runs/grey-short-tan/avatarstudio-recon-cpu/recon/nerfstudio_models --prompt "$prompt" --output-dir $N/runs --experiment-name grey-short-tan --timestamp $name --viewer.quit-on-train-completion True
  date
  $T avatarstudio eval --original $N/runs/grey-short-tan/avatarstudio-recon-cpu/recon/config.yml --edited $N/runs/grey-short-tan/avatarstudio-edit-fast/$name/config.yml --prompt-set $R/prompts.yaml --output $N/scores_$name.json
  date
done
echo NEW-IDENTITY-DONE
