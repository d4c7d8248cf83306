"""The square a diffusion model sees of an image: framed on the head, padded rather than cropped (tiny images)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from avatarstudio_ns.data.synth import DEFAULT_ATTRIBUTES, SynthHead, make_rig, render_views
from avatarstudio_ns.guidance.imaging import crop_square, paste_square, square_boxes, to_model_square


def _centre_crop(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """The framing before issue 17: centre crop to min(h, w), then resize."""
    h, w = images.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = images[..., top : top + side, left : left + side]
    if side == resolution:
        return square
    return F.interpolate(
        square, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=side > resolution
    )


def _inside(box: torch.Tensor, mask: torch.Tensor) -> bool:
    """Whether every pixel of ``mask`` lies inside the square ``box`` (top, left, side)."""
    top, left, side = box.tolist()
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return bool(((rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)).all())


def test_square_images_are_framed_exactly_as_the_centre_crop_framed_them():
    images = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    blob = torch.zeros(2, 24, 24)
    blob[0, 6:14, 9:20] = 1.0  # a head well inside
    blob[1] = 1.0  # foreground up to every edge: the margin has nowhere to go but padding, and is cut instead
    for resolution in (24, 16, 40):
        old = _centre_crop(images, resolution)
        assert torch.equal(to_model_square(images, resolution, blob), old)
        assert torch.equal(to_model_square(images, resolution), old)
        assert torch.equal(to_model_square(images, resolution, torch.zeros(2, 24, 24)), old)  # no head: fallback


def test_the_square_of_a_wide_image_holds_the_whole_head_padded_with_the_backdrop():
    h, w = 16, 40
    image = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1), requires_grad=True)
    head = torch.zeros(1, h, w)
    head[0, 2:15, 14:36] = 0.9  # off-centre and wider than the image is high: a centre crop cut it
    box = square_boxes(head, h, w)[0]
    assert _inside(box, head[0] > 0.5)
    top, left, side = box.tolist()
    assert (top, left, side) == (-5, 12, 26)  # 22 px and 2 px each side; 5 rows of padding above and below
    background = torch.tensor([0.2, 0.4, 0.6])
    square = to_model_square(image, side, head, background)[0]
    assert torch.equal(square[:, 5:21], image[0, :, :, left : left + side])
    assert torch.equal(square[:, :5], background[:, None, None].expand(3, 5, side))
    assert torch.equal(square[:, 21:], background[:, None, None].expand(3, 5, side))
    # Differentiable with respect to the image: the pixels it saw get the gradient, nothing else does.
    square.sum().backward()
    seen = torch.zeros(h, w, dtype=torch.bool)
    seen[:, left : left + side] = True
    assert torch.equal(image.grad[0], seen.float().expand(3, h, w))
    # The square goes back where it came from; the padding is dropped, the rest of the image kept.
    restored = paste_square(crop_square(image[0].detach(), box), box, torch.zeros(3, h, w))
    assert torch.equal(restored, image[0].detach() * seen)


def test_without_a_head_the_square_covers_the_whole_image():
    assert square_boxes(None, 16, 40, batch=2).tolist() == [[-12, 0, 40]] * 2
    assert square_boxes(torch.zeros(1, 40, 16), 40, 16).tolist() == [[0, -12, 40]]


@pytest.mark.parametrize("size", [(64, 32), (32, 64)])
def test_the_framing_of_a_non_square_synth_render_holds_the_head(size):
    width, height = size
    rig = make_rig(2, width=width, height=height)
    assert rig.fx == rig.fy and (rig.cx, rig.cy) == (width / 2, height / 2)
    # The principal point moved along the long side: the head sits off-centre, as it may in a real capture.
    shift = {"cx": rig.cx - width / 4} if width > height else {"cy": rig.cy - height / 4}
    mask = render_views(SynthHead(DEFAULT_ATTRIBUTES), dataclasses.replace(rig, **shift), [0.0]).mask[0]
    head = mask > 0
    assert head.any(dim=(1, 2)).all()
    side = min(width, height)
    centre = torch.tensor([(height - side) // 2, (width - side) // 2, side])
    assert not all(_inside(centre, m) for m in head), "the centre crop lost no head pixel"
    assert all(_inside(box, m) for box, m in zip(square_boxes(mask, height, width), head, strict=True))
