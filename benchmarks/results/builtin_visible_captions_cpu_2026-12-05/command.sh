#!/bin/bash
# Issue 16: captions that name a colour only where its region shows, with the eye+lip part weight (`vis`; run here)
# and alone (`capt`; stopped after step 500 of 2400 to give its core to the decoder runs, not evaluated).
cd "$(git rev-parse --show-toplevel)"
export OMP_NUM_THREADS=1
variant=$1
case $variant in
  vis) core=0; extra="--unet.part-weight 20 --unet.weighted-parts eyes lips" ;;
  capt) core=1; extra="" ;;
esac
taskset -c $core avatarstudio train-builtin --work-dir outputs/builtin_$variant --output-dir outputs/builtin_${variant}_model \
  --device cpu --vae.init-from avatarstudio_ns/assets/builtin_model --vae.steps 0 \
  --unet.init-from avatarstudio_ns/assets/builtin_model --unet.captions.only-visible $extra \
  --unet.steps 2400 --unet.max-minutes 90 \
  --sitting-minutes 125 --evaluation.grid-path outputs/builtin_$variant/samples.jpg
echo "exit $?"
