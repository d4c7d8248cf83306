#!/bin/bash
# Issue 16: the eyes+lips part-weighted continuation of the shipped UNet again (its weights were lost with a wipe; same
# command and seeds as benchmarks/results/builtin_parts_eyes_lips_cpu_2026-12-05), to pair with the decoder of
# builtin_dec2. Sittings of at most 55 minutes; run again to continue.
cd "$(git rev-parse --show-toplevel)"
export OMP_NUM_THREADS=1
taskset -c 0 avatarstudio train-builtin --work-dir outputs/builtin_parts2 --output-dir outputs/builtin_parts2_model \
  --device cpu --vae.init-from avatarstudio_ns/assets/builtin_model --vae.steps 0 \
  --unet.init-from avatarstudio_ns/assets/builtin_model --unet.part-weight 20 --unet.weighted-parts eyes lips \
  --unet.steps 2400 --unet.max-minutes 90 \
  --sitting-minutes 55 --evaluation.grid-path outputs/builtin_parts2/samples.jpg
echo "exit $?"
