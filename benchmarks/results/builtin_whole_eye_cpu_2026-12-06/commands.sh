#!/bin/bash
# Issue 16, 2026-12-06 (twenty-first sitting): the eye words' part weight on the whole eye (`--unet.eye-region eyes`),
# from the shipped model, as the eyes-and-lips model (parts2) was trained with the iris alone. The development CPU
# (2 cores), one single-thread run per core; no GPU was lent. The renders and latents are parts2's (the first lines of
# benchmarks/results/builtin_attention_growth_cpu_2026-12-06/commands.sh parts2 make them; hard links here, as the same
# settings make the same files).
cd "$(git rev-parse --show-toplevel)"
export OMP_NUM_THREADS=1
# The loss and the shipped autoencoder; `common` starts the UNet from the shipped one, `cool` from another folder.
loss="--device cpu --vae.init-from avatarstudio_ns/assets/builtin_model --vae.steps 0 --unet.part-weight 20
  --unet.weighted-parts eyes lips --unet.eye-region eyes --no-evaluate"
common="$loss --unet.init-from avatarstudio_ns/assets/builtin_model"
link() { mkdir -p "$1" && cp -aln outputs/builtin_parts2/data_train outputs/builtin_parts2/latents.pt "$1"/; }
case $1 in
  # parts2 with the whole eye weighted (its control is parts2 itself: the same command with the iris alone).
  whole) link outputs/builtin_whole
    taskset -c 0 avatarstudio train-builtin --work-dir outputs/builtin_whole --output-dir outputs/builtin_whole_model \
      $common --unet.steps 2400 --unet.max-minutes 80 ;;
  # The same with eye colour named only where the eyes show (`--unet.captions.only-visible`).
  visible) link outputs/builtin_whole_vis
    taskset -c 1 avatarstudio train-builtin --work-dir outputs/builtin_whole_vis \
      --output-dir outputs/builtin_whole_vis_model $common --unet.captions.only-visible \
      --unet.steps 2400 --unet.max-minutes 60 ;;
  # Next: the shipped UNet grown by cross-attention at 16x16 and trained with the whole eye weighted from its first
  # step, against the last record's A (the same with the iris). Started at the end of this sitting, not finished: the
  # same command resumes it (90 minutes of training in all).
  grown) link outputs/builtin_grown_eye
    taskset -c 1 avatarstudio train-builtin --work-dir outputs/builtin_grown_eye \
      --output-dir outputs/builtin_grown_eye_model $common --model.unet-attention True True True False \
      --unet.steps 2400 --unet.max-minutes 90 ;;
  # Twenty-second sitting: a model's learning rate cooled down (`--unet.lr-schedule cosine`: 3e-4 falling to 0 over
  # 300 steps) with the same loss, from the whole-eye model above (`cool_whole`) or any other ($2: its folder; $3: a
  # name for the work and model folders; $4: the core).
  cool) link "outputs/builtin_cool_$3"
    taskset -c "${4:-0}" avatarstudio train-builtin --work-dir "outputs/builtin_cool_$3" \
      --output-dir "outputs/builtin_cool_$3_model" $loss \
      --unet.init-from "$2" --unet.lr 3e-4 --unet.lr-schedule cosine --unet.warmup-steps 10 --unet.steps 300 \
      ${5:+--model.unet-attention $5} ;;
  cool_whole) bash "$0" cool outputs/builtin_whole_model whole 0 ;;
  # Twenty-second sitting: the demo avatar edited with an eye and a lip prompt, with the cooled-down whole-eye model
  # as the base model, or the base model $2 (outputs/builtin_cool_grown_model: the kept candidate, also with the
  # default blue hair); later runs reuse the capture, recon and each model's personalisation. demo_edits/ has the
  # scores.
  edits) for prompt in "green eyes" "red lips"; do
      OMP_NUM_THREADS=1 taskset -c 0 avatarstudio demo --output outputs/demo_green_eyes \
        --base-model "${2:-outputs/builtin_cool_whole_model}" --prompt "photo of a person with $prompt"
    done ;;
esac
