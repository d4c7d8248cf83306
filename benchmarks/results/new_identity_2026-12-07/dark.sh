#!/bin/bash
# the held-out identity's dark skin (the second prompt of commands.sh), with this checkout's code
cd /work/main
export OMP_NUM_THREADS=1 PYTHONPATH=/work/main
N=outputs/new_identity
T="taskset -c 1"
date
$T ns-train avatarstudio-edit-fast --data $N/capture --load-dir $N/runs/grey-short-tan/avatarstudio-recon-cpu/recon/nerfstudio_models --prompt "photo of a person with dark skin" --output-dir $N/runs --experiment-name grey-short-tan --timestamp dark-skin --viewer.quit-on-train-completion True
date
$T avatarstudio eval --original $N/runs/grey-short-tan/avatarstudio-recon-cpu/recon/config.yml --edited $N/runs/grey-short-tan/avatarstudio-edit-fast/dark-skin/config.yml --prompt-set benchmarks/results/new_identity_2026-12-07/prompts.yaml --output $N/scores_dark-skin.json
date
