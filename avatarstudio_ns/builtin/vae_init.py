"""A colour-preserving starting point for the autoencoder: an 8x8 colour thumbnail in, nearest upsampling out.

Trained from random weights on a CPU budget (a few hundred steps), the autoencoder learned luminance and shape
but no hue: every head came back grey-brown, so no caption could ever change a hair colour. The cause is the
per-image GroupNorm in front of each ``conv_out``, which removes a feature map's scale, and with it the absolute
colour, until training has found a workaround. So training starts instead from weights that already carry
colour through:

- every residual branch ends in zeros (``conv2``, attention ``to_out``), so each block starts as the identity;
  ``conv_shortcut`` copies channels;
- downsamplers average 2x2 blocks and upsamplers copy (nearest), so the latent's first three channels are
  the 8x8 average colour and the decoder spreads it back;
- next to each colour channel sits a large constant "anchor" channel in the same GroupNorm group, which makes
  the normalisation nearly the same affine map for every image, so colour survives it;
- both ``conv_out`` layers are fitted by least squares on real images (the encoder's to the 8x8 average
  colour, the decoder's to the image), which absorbs the normalisation's offset and the SiLU's curve.

Training then only has to add detail through the residual branches.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from diffusers.models.attention_processor import Attention
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from torch import Tensor, nn

ANCHOR = 20.0
"""Value of the constant anchor channels (large against colours in [-1, 1])."""
_COLOUR = (0, 2, 4)
_ANCHORS = (1, 3, 5)


def _identity_conv(conv: nn.Conv2d, taps: list[tuple[int, int]]) -> None:
    """Per-channel identity over the given kernel taps (averaged), zero bias, nothing across channels."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for c in range(min(conv.in_channels, conv.out_channels)):
            for ty, tx in taps:
                conv.weight[c, c, ty, tx] = 1.0 / len(taps)


def _input_conv(conv: nn.Conv2d) -> None:
    """Colour (or latent) channel i to channel 2i, a constant anchor in channel 2i + 1."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for i, (c, a) in enumerate(zip(_COLOUR, _ANCHORS, strict=True)):
            conv.weight[c, i, 1, 1] = 1.0
            conv.bias[a] = ANCHOR


def _fit_output_conv(conv: nn.Conv2d, features: Tensor, target: Tensor) -> None:
    """Least-squares centre-tap weights from the colour channels of ``features`` (N, C, h, w) to ``target``."""
    f = features[:, list(_COLOUR)].permute(0, 2, 3, 1).reshape(-1, len(_COLOUR))
    design = torch.cat([f, torch.ones(f.shape[0], 1)], dim=1)
    y = target.permute(0, 2, 3, 1).reshape(-1, target.shape[1])
    solution = torch.linalg.lstsq(design.double(), y.double()).solution.float()
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for o in range(target.shape[1]):
            for k, c in enumerate(_COLOUR):
                conv.weight[o, c, 1, 1] = solution[k, o]
            conv.bias[o] = solution[-1, o]


def _capture_input(module: nn.Module, run) -> Tensor:
    """The input tensor ``module`` receives while ``run()`` executes."""
    seen: list[Tensor] = []
    handle = module.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
    try:
        run()
    finally:
        handle.remove()
    return seen[0]


@torch.no_grad()
def colour_preserving_init(vae: AutoencoderKL, images: Tensor) -> None:
    """Overwrite ``vae``'s weights with the thumbnail autoencoder described in the module docstring.

    Args:
        vae: An autoencoder from ``build_vae`` with at least 8 channels in every block.
        images: A few dozen training images (N, 3, H, W) in [-1, 1], for the least-squares fits.
    """
    for module in vae.modules():
        if isinstance(module, ResnetBlock2D):
            nn.init.zeros_(module.conv2.weight)
            nn.init.zeros_(module.conv2.bias)
            if module.conv_shortcut is not None:
                _identity_conv(module.conv_shortcut, [(0, 0)])
        elif isinstance(module, Attention):
            nn.init.zeros_(module.to_out[0].weight)
            nn.init.zeros_(module.to_out[0].bias)
        elif isinstance(module, Downsample2D):
            _identity_conv(module.conv, [(0, 0), (0, 1), (1, 0), (1, 1)])
        elif isinstance(module, Upsample2D):
            _identity_conv(module.conv, [(1, 1)])
    _input_conv(vae.encoder.conv_in)
    _input_conv(vae.decoder.conv_in)
    nn.init.eye_(vae.post_quant_conv.weight[:, :, 0, 0])
    nn.init.zeros_(vae.post_quant_conv.bias)
    latent = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.weight[:latent] = 0.0
        vae.quant_conv.bias[:latent] = 0.0
        for c in range(latent):
            vae.quant_conv.weight[c, c, 0, 0] = 1.0

    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    thumbnails = nn.functional.avg_pool2d(images, scale)
    encoder_out = vae.encoder.conv_out
    features = _capture_input(encoder_out, lambda: vae.encode(images))
    target = torch.zeros(images.shape[0], latent, *thumbnails.shape[-2:])
    target[:, :3] = thumbnails
    _fit_output_conv_mean(encoder_out, features, target, latent)
    decoder_out = vae.decoder.conv_out
    features = _capture_input(decoder_out, lambda: vae.decode(thumbnails_as_latents(thumbnails, latent)))
    _fit_output_conv(decoder_out, features, images)


def thumbnails_as_latents(thumbnails: Tensor, latent_channels: int) -> Tensor:
    """Latents whose first three channels are colour thumbnails and the rest zero."""
    z = torch.zeros(thumbnails.shape[0], latent_channels, *thumbnails.shape[-2:])
    z[:, :3] = thumbnails
    return z


def _fit_output_conv_mean(conv: nn.Conv2d, features: Tensor, target: Tensor, latent: int) -> None:
    """Fit only the posterior-mean half of the encoder's ``conv_out``; keep its log-variance half."""
    weight, bias = conv.weight[latent:].clone(), conv.bias[latent:].clone()
    _fit_output_conv(conv, features, torch.cat([target, torch.zeros_like(target)], dim=1))
    with torch.no_grad():
        conv.weight[latent:] = weight
        conv.bias[latent:] = bias
