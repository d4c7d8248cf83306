cd "$(git rev-parse --show-toplevel)"
export OMP_NUM_THREADS=1
taskset -c 1 avatarstudio train-builtin --work-dir outputs/builtin_parts2 --output-dir outputs/builtin_parts2_model \
  --device cpu --vae.init-from avatarstudio_ns/assets/builtin_model --vae.steps 0 \
  --unet.init-from avatarstudio_ns/assets/builtin_model --unet.part-weight 20 --unet.weighted-parts eyes lips \
  --unet.steps 2400 --unet.max-minutes 90 \
  --sitting-minutes 125 --evaluation.grid-path outputs/builtin_parts2/samples.jpg
echo "exit $?"
