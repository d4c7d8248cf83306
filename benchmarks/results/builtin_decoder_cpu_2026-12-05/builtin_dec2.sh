#!/bin/bash
# Issue 16: the decoder of builtin_dec trained 3000 steps further alone (the same settings); exported without evaluation.
cd "$(git rev-parse --show-toplevel)"
export OMP_NUM_THREADS=1
taskset -c 1 avatarstudio train-builtin --work-dir outputs/builtin_dec2 --output-dir outputs/builtin_dec2_model \
  --device cpu --vae.init-from outputs/builtin_dec_model --vae.no-train-encoder --vae.steps 3000 \
  --unet.init-from avatarstudio_ns/assets/builtin_model --unet.steps 0 \
  --sitting-minutes 125 --no-evaluate
echo "exit $?"
