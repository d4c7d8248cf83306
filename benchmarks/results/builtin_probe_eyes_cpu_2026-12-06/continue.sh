#!/bin/bash
# Issue 16: the eyes-and-lips UNet (builtin_parts2_model) continued ~38 more minutes (A: same settings; B: eye colour
# named in 90 % of captions instead of 70 %). Judged afterwards by outputs/probes/judge.py with the cached probes.
cd "$(git rev-parse --show-toplevel)"
export OMP_NUM_THREADS=1
variant=$1
case $variant in
  more) core=0; extra="" ;;
  peyes) core=1; extra="--unet.captions.p-eyes 0.9" ;;
esac
taskset -c $core avatarstudio train-builtin --work-dir outputs/builtin_$variant --output-dir outputs/builtin_${variant}_model \
  --device cpu --vae.init-from avatarstudio_ns/assets/builtin_model --vae.steps 0 \
  --unet.init-from outputs/builtin_parts2_model --unet.part-weight 20 --unet.weighted-parts eyes lips $extra \
  --unet.steps 1300 --unet.max-minutes 38 --no-evaluate
echo "exit $?"
