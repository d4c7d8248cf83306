"""Training the built-in text-to-image model of synthetic heads, and the attribute probe that scores it.

``dataset`` renders and caches captioned heads, ``train`` trains the VAE, then the UNet and text encoder,
and writes a Stable-Diffusion-layout folder, ``probe`` is a small classifier of hair colour, skin tone and
eye colour, ``evaluate`` samples the trained model and scores the samples with the probe.
"""
