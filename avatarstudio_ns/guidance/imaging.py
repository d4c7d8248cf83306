"""Bring images to the square a diffusion model works at, framed on the head, identically for training and guidance.

A capture need not be square (NeRSemble exports are 802 x 550). The square the model sees is chosen from the image's
foreground (a render's accumulation, a capture's mask) so that it holds the whole head: see :func:`square_boxes`.
Where that square reaches past the image it is padded with the backdrop colour, never cropped into the head. The
backdrop rather than a copy of the border: past the image's edge a wider camera would see the backdrop (the renders are
composited on it, the captured keyframes masked onto it), whereas a replicated border smears whatever touches the edge
(a neck leaving at the bottom) into stripes and sums the whole band's gradient onto one row of the render.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

FOREGROUND_THRESHOLD = 0.5
"""A pixel is foreground where its weight (accumulation, mask) exceeds this, as the edit region counts the head; a
render's faint floaters stay out of the head's box."""
FRAMING_MARGIN = 0.05
"""Room around the head's box on each side, as a fraction of the box's longer side."""
DEFAULT_BACKGROUND = (1.0, 1.0, 1.0)
"""Padding colour when the caller gives none: the backdrop of the synthetic captures, of the recon's renders
(``background_color`` default) and of the captured keyframe images (``keyframe_images``' fallback)."""


@torch.no_grad()
def square_boxes(
    foreground: Float[Tensor, "b h w"] | None,
    height: int,
    width: int,
    batch: int = 1,
    margin: float = FRAMING_MARGIN,
) -> Int[Tensor, "b 3"]:
    """The square the model sees of each image, as (top, left, side) in the image's pixels.

    The square is the smallest that holds the foreground's bounding box with ``margin`` around it, and at least
    min(height, width) on a side (a small head is not zoomed into: it keeps the scale the centre crop gave it). It is
    centred on the box, then shifted to lie inside the image where it fits, or to cover the image's whole extent where
    it does not (its overhang is padding). The margin is cut at the image's edges: beyond them is no head to leave
    room for, so a square image is always seen whole, exactly as a centre crop saw it. Without a foreground (or where
    no pixel exceeds :data:`FOREGROUND_THRESHOLD`) the square is max(height, width) on a side and centred: it covers
    the whole image, padded on the short axis.

    Args:
        foreground: Foreground weight of each pixel in [0, 1], or None.
        height: Image height in pixels.
        width: Image width in pixels.
        batch: Number of images when ``foreground`` is None.
        margin: Room around the foreground's box, a fraction of its longer side.

    Returns:
        One (top, left, side) per image; top and left may be negative (padding above / left of the image).
    """
    if foreground is not None:
        if tuple(foreground.shape[-2:]) != (height, width):
            raise ValueError(f"foreground of shape {tuple(foreground.shape)} does not match a {height}x{width} image.")
        batch = foreground.shape[0]
    boxes = []
    for i in range(batch):
        mask = None if foreground is None else foreground[i].detach() > FOREGROUND_THRESHOLD
        if mask is None or not bool(mask.any()):
            side = max(height, width)
            boxes.append(((height - side) // 2, (width - side) // 2, side))
            continue
        rows, cols = torch.nonzero(mask.any(dim=1)).flatten(), torch.nonzero(mask.any(dim=0)).flatten()
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        room = math.ceil(margin * max(y1 - y0, x1 - x0))
        needed = max(min(y1 + room, height) - max(y0 - room, 0), min(x1 + room, width) - max(x0 - room, 0))
        side = max(needed, min(height, width))
        # Floor of the centred start: the square then holds [y0, y1) whatever the parities.
        top, left = (y0 + y1 - side) // 2, (x0 + x1 - side) // 2
        top = min(max(top, min(0, height - side)), max(0, height - side))
        left = min(max(left, min(0, width - side)), max(0, width - side))
        boxes.append((top, left, side))
    return torch.tensor(boxes, dtype=torch.long).reshape(-1, 3)


def _background(background: Float[Tensor, "3"] | Sequence[float] | None, like: Tensor) -> Tensor:
    colour = DEFAULT_BACKGROUND if background is None else background
    return torch.as_tensor(colour, dtype=like.dtype).to(like.device).reshape(-1, 1, 1)


def crop_square(
    image: Float[Tensor, "c h w"],
    box: Int[Tensor, "3"] | Sequence[int],
    background: Float[Tensor, " c"] | Sequence[float] | None = None,
) -> Float[Tensor, "c side side"]:
    """The image's pixels in ``box`` (top, left, side), the part outside the image filled with ``background``.

    Differentiable with respect to the image; the padding takes no gradient (it is not part of the image).
    """
    top, left, side = (int(v) for v in box)
    height, width = image.shape[-2:]
    if top >= 0 and left >= 0 and top + side <= height and left + side <= width:
        return image[..., top : top + side, left : left + side]
    y0, y1, x0, x1 = max(top, 0), min(top + side, height), max(left, 0), min(left + side, width)
    canvas = _background(background, image).expand(image.shape[0], side, side).clone()
    canvas[:, y0 - top : y1 - top, x0 - left : x1 - left] = image[:, y0:y1, x0:x1]
    return canvas


def paste_square(
    square: Float[Tensor, "c side side"], box: Int[Tensor, "3"] | Sequence[int], image: Float[Tensor, "c h w"]
) -> Float[Tensor, "c h w"]:
    """A copy of ``image`` with ``square`` put back where ``box`` took it from (the inverse of :func:`crop_square`).

    The square's padding, outside the image, is dropped; the image's pixels outside the box are kept.
    """
    top, left, side = (int(v) for v in box)
    if tuple(square.shape[-2:]) != (side, side):
        raise ValueError(f"square of shape {tuple(square.shape)} does not match a box of side {side}.")
    height, width = image.shape[-2:]
    y0, y1, x0, x1 = max(top, 0), min(top + side, height), max(left, 0), min(left + side, width)
    image = image.clone()
    image[:, y0:y1, x0:x1] = square[:, y0 - top : y1 - top, x0 - left : x1 - left]
    return image


def _resize(squares: Tensor, resolution: int) -> Tensor:
    """Bilinear resize of square images to ``resolution`` (antialiased when shrinking)."""
    side = squares.shape[-1]
    if side == resolution:
        return squares
    return F.interpolate(
        squares, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=side > resolution
    )


def to_model_square(
    images: Float[Tensor, "b 3 h w"],
    resolution: int,
    foreground: Float[Tensor, "b h w"] | None = None,
    background: Float[Tensor, "3"] | Sequence[float] | None = None,
    boxes: Int[Tensor, "b 3"] | None = None,
) -> Float[Tensor, "b 3 r r"]:
    """The square of each image that holds its head (:func:`square_boxes`), resized to ``resolution``.

    Personalisation, VT-SDS, the dataset-update baseline and the relevance maps all go through this function, so
    the personalised model is asked about exactly the framing it was trained on. Differentiable with respect to the
    images (the boxes are not).

    Args:
        images: Images in [0, 1].
        resolution: Side of the result.
        foreground: Foreground weight per pixel (accumulation, mask) that the square is framed on; None: the whole
            image, padded to a square.
        background: Padding colour; None: :data:`DEFAULT_BACKGROUND`.
        boxes: The squares, when already chosen (``foreground`` is then unused).
    """
    b, _, h, w = images.shape
    if boxes is None:
        boxes = square_boxes(foreground, h, w, batch=b)
    if bool((boxes == boxes[0]).all()):
        # One box for the whole batch (always so for square images): one crop and one resize.
        top, left, side = (int(v) for v in boxes[0])
        if top >= 0 and left >= 0 and top + side <= h and left + side <= w:
            return _resize(images[..., top : top + side, left : left + side], resolution)
    squares = [crop_square(image, box, background)[None] for image, box in zip(images, boxes, strict=True)]
    return torch.cat([_resize(square, resolution) for square in squares])


def _box(x: Tensor, radius: int) -> Tensor:
    """Mean over the (2r+1)^2 window around each pixel (windows cut at the image border)."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def guided_filter(
    values: Float[Tensor, "b 1 h w"], guide: Float[Tensor, "b 3 h w"], radius: int, eps: float = 1e-3
) -> Float[Tensor, "b 1 h w"]:
    """Edge-aware smoothing of ``values`` by a colour ``guide`` (He, Sun and Tang's guided filter).

    Within each window the output is an affine function of the guide's colour fitted to ``values``, so a coarse map
    (a relevance map upsampled from latent cells) takes the image's edges: it changes where the colour changes.

    Args:
        values: The map to filter.
        guide: The image whose edges the result follows, RGB.
        radius: Window radius in pixels (about one coarse cell, so each window sees both sides of an edge).
        eps: Regulariser of the fit; colour variations below about sqrt(eps) count as flat.
    """
    mean_guide, mean_values = _box(guide, radius), _box(values, radius)
    covariance_gv = _box(guide * values, radius) - mean_guide * mean_values
    products = (guide[:, :, None] * guide[:, None]).flatten(1, 2)  # b 9 h w
    covariance_gg = (_box(products, radius) - (mean_guide[:, :, None] * mean_guide[:, None]).flatten(1, 2)).unflatten(
        1, (3, 3)
    )
    system = covariance_gg.permute(0, 3, 4, 1, 2) + eps * torch.eye(3, device=guide.device, dtype=guide.dtype)
    slope = torch.linalg.solve(system, covariance_gv.permute(0, 2, 3, 1)[..., None])[..., 0].permute(0, 3, 1, 2)
    offset = mean_values - (slope * mean_guide).sum(dim=1, keepdim=True)
    return (_box(slope, radius) * guide).sum(dim=1, keepdim=True) + _box(offset, radius)
