#!/bin/bash
# Issue 16: the shipped autoencoder's decoder trained further alone (encoder, latents and UNet unchanged).
cd "$(git rev-parse --show-toplevel)"
export OMP_NUM_THREADS=1
taskset -c 1 avatarstudio train-builtin --work-dir outputs/builtin_dec --output-dir outputs/builtin_dec_model \
  --device cpu --vae.init-from avatarstudio_ns/assets/builtin_model --vae.no-train-encoder --vae.steps 2000 \
  --unet.init-from avatarstudio_ns/assets/builtin_model --unet.steps 0 \
  --sitting-minutes 125 --evaluation.grid-path outputs/builtin_dec/samples.jpg
echo "exit $?"
