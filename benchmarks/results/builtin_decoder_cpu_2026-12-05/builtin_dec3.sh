#!/bin/bash
# Issue 16: the decoder of builtin_dec2 trained 3000 steps further alone; evaluated with the shipped UNet.
cd "$(git rev-parse --show-toplevel)"
export OMP_NUM_THREADS=1
taskset -c 1 avatarstudio train-builtin --work-dir outputs/builtin_dec3 --output-dir outputs/builtin_dec3_model \
  --device cpu --vae.init-from outputs/builtin_dec2_model --vae.no-train-encoder --vae.steps 3000 \
  --unet.init-from avatarstudio_ns/assets/builtin_model --unet.steps 0 \
  --sitting-minutes 45 --evaluation.grid-path outputs/builtin_dec3/samples.jpg
echo "exit $?"
