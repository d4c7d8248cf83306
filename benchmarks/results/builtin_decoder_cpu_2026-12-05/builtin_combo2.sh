#!/bin/bash
# Issue 16: the UNet and text encoder of builtin_parts2 with the decoder of builtin_dec2 (no training), evaluated.
cd "$(git rev-parse --show-toplevel)"
export OMP_NUM_THREADS=1
taskset -c ${CORE:-1} avatarstudio train-builtin --work-dir outputs/builtin_combo2 --output-dir outputs/builtin_combo2_model \
  --device cpu --vae.init-from outputs/builtin_dec2_model --vae.steps 0 \
  --unet.init-from outputs/builtin_parts2_model --unet.steps 0 \
  --sitting-minutes 125 --evaluation.grid-path outputs/builtin_combo2/samples.jpg
echo "exit $?"
