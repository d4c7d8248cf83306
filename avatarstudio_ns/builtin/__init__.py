"""The built-in text-to-image model of synthetic heads: how it is built, trained and scored.

``small_model`` builds Stable-Diffusion-layout folders of any size and ``char_tokenizer`` their vocabulary;
``head_images`` renders and caches labelled heads and writes their captions; ``train`` trains the VAE
(``vae_stage``), then the UNet and text encoder (``unet_stage``), in resumable sittings (``sitting``), and writes
the folder; ``probe`` segments a head image and reads every attribute from its region, and ``sample_accuracy``
samples the trained model and scores the samples with the probe; ``step_timing`` measures the stages' step times
and estimates a schedule's wall time.
"""
