cd /work/main
export OMP_NUM_THREADS=1
taskset -c 1 avatarstudio train-builtin --work-dir outputs/builtin_parts3 --output-dir outputs/builtin_parts3_model \
  --device cpu --vae.init-from avatarstudio_ns/assets/builtin_model --vae.steps 0 \
  --unet.init-from outputs/builtin_parts2_model --unet.part-weight 60 --unet.weighted-parts eyes \
  --unet.steps 1200 --unet.max-minutes 90 \
  --sitting-minutes 125 --evaluation.grid-path outputs/builtin_parts3/samples.jpg
echo "exit $?"
