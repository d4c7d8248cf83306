"""The built-in text-to-image model of synthetic heads: how it is built, trained and scored.

``small_model`` builds Stable-Diffusion-layout folders of any size and ``char_tokenizer`` their vocabulary;
``head_images`` renders and caches captioned heads, ``train`` trains the VAE, then the UNet and text encoder, and
writes the folder; ``probe`` is a small classifier of hair colour, skin tone and eye colour, and
``sample_accuracy`` samples the trained model and scores the samples with the probe.
"""
