set -e
cd /work/main
while pgrep -f "queue0.sh" > /dev/null; do sleep 20; done
N=outputs/new_identity
export OMP_NUM_THREADS=1
T="taskset -c 0"
date
$T avatarstudio synth --output $N/capture --random-identity --seed 7 --num-cameras 8 --resolution 64 --no-progress
$T ns-train avatarstudio-recon-cpu --data $N/capture --output-dir $N/runs --experiment-name grey-short-tan --timestamp recon
date
$T ns-train avatarstudio-edit-fast --data $N/capture --load-dir $N/runs/grey-short-tan/avatarstudio-recon-cpu/recon/nerfstudio_models --prompt "photo of a person with red hair" --output-dir $N/runs --experiment-name grey-short-tan --timestamp red-hair
date
$T avatarstudio eval --original $N/runs/grey-short-tan/avatarstudio-recon-cpu/recon/config.yml --edited $N/runs/grey-short-tan/avatarstudio-edit-fast/red-hair/config.yml --prompt-set $N/prompts.yaml --output $N/scores.json
date
