set -e
cd /work/main
N=outputs/new_identity
export OMP_NUM_THREADS=1
T="taskset -c 1"
date
$T ns-train avatarstudio-edit-fast --data $N/capture --load-dir $N/runs/grey-short-tan/avatarstudio-recon-cpu/recon/nerfstudio_models --prompt "photo of a person with red hair" --output-dir $N/runs --experiment-name grey-short-tan --timestamp red-hair-votes --viewer.quit-on-train-completion True
date
$T avatarstudio eval --original $N/runs/grey-short-tan/avatarstudio-recon-cpu/recon/config.yml --edited $N/runs/grey-short-tan/avatarstudio-edit-fast/red-hair-votes/config.yml --prompt-set $N/prompts.yaml --output $N/scores_votes.json
date
