#!/bin/bash
# Issue 16, 2026-12-07 (twenty-eighth sitting): the built-in model with 32x32 latents at 64 px (a 2x-downsampling
# autoencoder, VAE blocks (16, 32); the UNet is version 4's levels with a convolution-only 32x32 level of 16 channels
# in front), trained from scratch with version 4's loss (part weight 20 on the whole eye and the lips, the defaults).
# The development CPU (2 cores, no GPU lent). Run from anywhere; paths are the repository's.
#   bash commands.sh cost                 # step times of the shipped sizes and of two 32x32 candidates
#   bash commands.sh train MINUTES [N]    # one sitting of MINUTES on N torch threads (default 1); run it again to
#                                         # continue where the last sitting stopped (outputs/latent32/work); the
#                                         # evaluation at its end judges 16 samples per prompt, as version 4's were
#   bash commands.sh grow MINUTES [N]     # the same sizes, the UNet's coarser levels and the text encoder started
#                                         # from the shipped version 4 (--unet.init-from; the 32x32 level new), this
#                                         # record's autoencoder kept; 2000 steps, in sittings as train
#   bash commands.sh edits                # the demo avatar's green eyes and red lips with the finished model
cd "$(git rev-parse --show-toplevel)"
here=benchmarks/results/builtin_latent32_cpu_2026-12-07
latent32="--model.vae-channels 16 32 --model.unet-channels 16 32 64 128 128
  --model.unet-attention False True True True False"
case $1 in
  cost)
    export OMP_NUM_THREADS=1
    for sizes in "" "$latent32" "--model.vae-channels 16 32 --model.unet-channels 32 32 64 128 128
        --model.unet-attention False True True True False"; do
      taskset -c 0 avatarstudio train-builtin --estimate --work-dir outputs/latent32/estimate $sizes
    done
    taskset -c 0 python "$here/sds_cost.py" ;;
  train)
    export OMP_NUM_THREADS=${3:-1}
    avatarstudio train-builtin --work-dir outputs/latent32/work --output-dir outputs/latent32/model $latent32 \
      --unet.steps 3000 --unet.lr-schedule cosine --evaluation.grid-path outputs/latent32/samples.jpg \
      --evaluation.samples-per-prompt 16 --threads "${3:-1}" --sitting-minutes "$2" ;;
  grow)
    export OMP_NUM_THREADS=${3:-1}
    avatarstudio train-builtin --work-dir outputs/latent32/grown_work --output-dir outputs/latent32/grown_model \
      $latent32 --model.time-embedding-dim 128 --vae.init-from "$here" --vae.steps 0 \
      --unet.init-from avatarstudio_ns/assets/builtin_model --unet.steps 2000 --unet.lr-schedule cosine \
      --evaluation.grid-path outputs/latent32/grown_samples.jpg --evaluation.samples-per-prompt 16 \
      --threads "${3:-1}" --sitting-minutes "$2" ;;
  edits)
    for prompt in "green eyes" "red lips"; do
      OMP_NUM_THREADS=1 avatarstudio demo --output outputs/latent32/demo --base-model outputs/latent32/model \
        --prompt "photo of a person with $prompt"
    done ;;
esac
