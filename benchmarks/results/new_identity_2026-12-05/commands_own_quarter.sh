#!/usr/bin/env bash
# after the ablation process on core $1: the held-out identity, made, reconstructed, edited and scored on that core
set -e
core=$1
while pgrep -f "[a]blation2.sh $core" > /dev/null; do sleep 20; done
cd /work/main
N=outputs/new_identity
export OMP_NUM_THREADS=1
T="taskset -c $core"
date
[ -f $N/capture/transforms.json ] || $T avatarstudio synth --output $N/capture --random-identity --seed 7 --num-cameras 8 --resolution 64 --no-progress
$T ns-train avatarstudio-recon-cpu --data $N/capture --output-dir $N/runs --experiment-name grey-short-tan --timestamp recon --viewer.quit-on-train-completion True
date
$T ns-train avatarstudio-edit-fast --data $N/capture --load-dir $N/runs/grey-short-tan/avatarstudio-recon-cpu/recon/nerfstudio_models --prompt "photo of a person with red hair" --output-dir $N/runs --experiment-name grey-short-tan --timestamp red-hair-own-quarter --viewer.quit-on-train-completion True
date
$T avatarstudio eval --original $N/runs/grey-short-tan/avatarstudio-recon-cpu/recon/config.yml --edited $N/runs/grey-short-tan/avatarstudio-edit-fast/red-hair-own-quarter/config.yml --prompt-set benchmarks/results/new_identity_2026-12-05/prompts.yaml --output $N/scores_own_quarter.json
date
echo NEW-IDENTITY-DONE
