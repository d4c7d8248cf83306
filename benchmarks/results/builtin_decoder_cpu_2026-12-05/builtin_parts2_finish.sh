#!/bin/bash
# After the first sitting of builtin_parts2 stops: finish its UNet steps and export, without the evaluation.
cd /work/main
while pgrep -f "[b]uiltin_parts2 --output-dir" > /dev/null; do sleep 10; done
export OMP_NUM_THREADS=1
taskset -c 0 avatarstudio train-builtin --work-dir outputs/builtin_parts2 --output-dir outputs/builtin_parts2_model \
  --device cpu --vae.init-from avatarstudio_ns/assets/builtin_model --vae.steps 0 \
  --unet.init-from avatarstudio_ns/assets/builtin_model --unet.part-weight 20 --unet.weighted-parts eyes lips \
  --unet.steps 2400 --unet.max-minutes 90 --sitting-minutes 20 --no-evaluate
echo "exit $?"
