#!/bin/bash
# Issue 16, 2026-12-06 (twentieth sitting): cross-attention grown into the 16x16 level of the UNet, with the eyes-and-lips
# part weight. The development CPU (2 cores), one single-thread run per core; no GPU was lent.
cd "$(git rev-parse --show-toplevel)"
export OMP_NUM_THREADS=1
common="--device cpu --vae.init-from avatarstudio_ns/assets/builtin_model --vae.steps 0 --unet.part-weight 20 --unet.weighted-parts eyes lips --no-evaluate"
case $1 in
  # The eyes-and-lips model of 2026-12-05 made again (this machine had been wiped): the same command, bit-identical
  # samples (the seed-0 probe reads them as that record did).
  parts2) taskset -c 0 avatarstudio train-builtin --work-dir outputs/builtin_parts2 --output-dir outputs/builtin_parts2_model \
      --unet.init-from avatarstudio_ns/assets/builtin_model $common --unet.steps 2400 --unet.max-minutes 90 ;;
  # A: the shipped UNet grown by cross-attention at 16x16, then trained as parts2 (90 minutes cap).
  attn16p) taskset -c 1 avatarstudio train-builtin --work-dir outputs/builtin_attn16p --output-dir outputs/builtin_attn16p_model \
      --unet.init-from avatarstudio_ns/assets/builtin_model $common --model.unet-attention True True True False \
      --unet.steps 2400 --unet.max-minutes 90 ;;
  # B: parts2 grown by cross-attention at 16x16 and trained on (50 minutes cap).
  p2attn) taskset -c 0 avatarstudio train-builtin --work-dir outputs/builtin_p2attn --output-dir outputs/builtin_p2attn_model \
      --unet.init-from outputs/builtin_parts2_model $common --model.unet-attention True True True False \
      --unet.steps 1300 --unet.max-minutes 50 ;;
  # C: B trained on with the eye words' weight on the whole eye (sclera, iris, pupil), 24 minutes cap.
  p2eye) taskset -c 1 python benchmarks/results/builtin_attention_growth_cpu_2026-12-06/train_whole_eye.py \
      --work-dir outputs/builtin_p2eye --output-dir outputs/builtin_p2eye_model \
      --unet.init-from outputs/builtin_p2attn_model $common --model.unet-attention True True True False \
      --unet.steps 1300 --unet.max-minutes 24 ;;
esac
