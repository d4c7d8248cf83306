"""The edit region: relevance from the diffusion model, lifted into one canonical grid, blending the edit."""

from __future__ import annotations

import pytest
import torch

from avatarstudio_ns.builtin.small_model import SmallModelConfig, write_small_model
from avatarstudio_ns.edit.region import EditRegion, EditRegionConfig, grow_by_colour, otsu_threshold, sharpen
from avatarstudio_ns.guidance.imaging import guided_filter
from avatarstudio_ns.guidance.loading import load_diffusion
from avatarstudio_ns.guidance.relevance import prompt_relevance

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def test_an_unfitted_region_is_everywhere_and_a_fitted_one_is_where_its_points_were():
    region = EditRegion(AABB, resolution=16)
    probe = torch.tensor([[0.5, 0.5, 0.5], [-0.5, -0.5, -0.5], [0.0, 0.9, 0.0]])
    assert torch.equal(region(probe), torch.ones(3, 1))
    # A surface patch near (0.5, 0.5, 0.5) in the region, another near (-0.5, -0.5, -0.5) outside it.
    inside = torch.tensor([0.5, 0.5, 0.5]) + 0.05 * torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    outside = -inside
    region.fit(torch.cat([inside, outside]), torch.cat([torch.ones(200), torch.zeros(200)]))
    values = region(probe)[:, 0]
    assert values[0] > 0.9 and values[1] < 0.1
    assert values[2] == 0.0  # near no surface point: not part of the region
    assert region(torch.tensor([[3.0, 0.0, 0.0]]))[0, 0] == 0.0  # outside the box


def test_sharpen_is_a_smooth_step_around_the_threshold():
    x = torch.linspace(0.0, 1.0, 101)
    y = sharpen(x, threshold=0.5, softness=0.2)
    assert torch.all(y[x < 0.4] == 0.0) and torch.all(y[x > 0.6] == 1.0)
    assert torch.all(y[1:] >= y[:-1]) and y[50] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = write_small_model(tmp_path_factory.mktemp("model") / "tiny", SmallModelConfig.tiny())
    return load_diffusion(str(folder), "cpu")


def test_the_guided_filter_moves_a_coarse_map_onto_the_images_colour_edge():
    # A brown/blue boundary at column 20, and a map that ramps across latent cells centred at column 24.
    columns = torch.arange(64).float()
    guide = torch.zeros(1, 3, 64, 64)
    guide[:, :, :, :20] = torch.tensor([0.30, 0.17, 0.08])[:, None, None]
    guide[:, :, :, 20:] = torch.tensor([0.10, 0.28, 0.85])[:, None, None]
    coarse = (1.0 - (columns - 16) / 16).clamp(0, 1).expand(1, 1, 64, 64)
    refined = guided_filter(coarse, guide, radius=8)[0, 0, 32]
    # The map now drops at the colour edge (by 0.0625 a pixel before) and no longer reaches 1 across it.
    assert refined[19] - refined[20] > 0.3 and refined[19] > 0.9 and refined[20] < 0.6
    # Flat colour: nothing to follow, the map is only smoothed.
    flat = guided_filter(coarse, torch.full_like(guide, 0.5), radius=8)
    assert torch.allclose(flat.mean(), coarse.mean(), atol=0.02)


def test_relevance_is_zero_for_the_same_prompt_and_covers_the_square_the_model_saw(tiny_model):
    images = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    text, reference = tiny_model.embed("photo of a person with blue hair"), tiny_model.embed("photo of a person")
    # Without a foreground the model sees each whole image, padded to a square: relevance everywhere.
    relevance = prompt_relevance(tiny_model, images, text, reference, num_noises=2, resolution=32)
    assert relevance.shape == (2, 24, 32) and torch.all(relevance > 0)
    # Framed on a head in columns 8-19: the square is the image's height, columns 2-25; nothing outside it.
    head = torch.zeros(2, 24, 32)
    head[:, 4:20, 8:20] = 1.0
    relevance = prompt_relevance(tiny_model, images, text, reference, num_noises=2, resolution=32, foreground=head)
    assert relevance.shape == (2, 24, 32)
    assert torch.all(relevance[:, :, :2] == 0) and torch.all(relevance[:, :, 26:] == 0)
    assert torch.all(relevance[:, :, 2:26] > 0)
    same = prompt_relevance(tiny_model, images, reference, reference, num_noises=2, resolution=32, foreground=head)
    assert torch.all(same == 0)


def test_region_iou_counts_the_foreground_above_one_half():
    import numpy as np

    from avatarstudio_ns.eval.metrics import region_iou, region_precision_recall

    region = np.array([[0.9, 0.6, 0.2, 0.8]])
    target = np.array([[True, False, True, True]])
    foreground = np.array([[True, True, True, False]])
    # In the region: pixels 0 and 1 (pixel 3 is backdrop); target: pixels 0 and 2 -> 1 / 3.
    assert region_iou(region, target, foreground) == pytest.approx(1 / 3)
    # Of the region, pixel 0 is on the target (1 / 2); of the target, pixel 0 is in the region (1 / 2).
    assert region_precision_recall(region, target, foreground) == pytest.approx((1 / 2, 1 / 2))
    assert region_precision_recall(np.zeros((1, 4)), target, foreground) == (0.0, 0.0)


def test_colour_growth_takes_in_the_rest_of_the_part_the_relevance_found_only_in_part():
    """A brown top (hair) over a skin-coloured bottom, off the head at the sides; the region's inside covers only the
    top rows of the hair, as the relevance covers a crown and not a bob's sides. The growth takes in the whole hair
    and none of the skin or the backdrop."""
    image = torch.empty(24, 20, 3)
    image[:12] = torch.tensor([0.35, 0.2, 0.1])
    image[12:] = torch.tensor([0.9, 0.7, 0.6])
    image[:, :2] = image[:, -2:] = 1.0
    image += 0.02 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    head = torch.zeros(24, 20, dtype=torch.bool)
    head[:, 2:-2] = True
    inside = torch.zeros(24, 20, dtype=torch.bool)
    inside[:4, 2:-2] = True
    grown = grow_by_colour(image, inside, head)
    assert grown[:12, 2:-2].all() and not grown[12:].any() and not grown[:, :2].any() and not grown[:, -2:].any()
    # Nothing grows from nothing, nor past a head it already covers.
    assert not grow_by_colour(image, torch.zeros_like(head), head).any()
    assert torch.equal(grow_by_colour(image, head, head), head)


def _shadowed_hair_over(below: tuple[float, float, float]):
    """A 24 x 20 head between two backdrop columns at each side: blonde hair in rows 0-13 that darkens into shadow
    from row 6, over ``below`` (skin or neck) in rows 14-23. Returns the image, the head, the hair's lit crown (rows
    0-6, a relevance's inside) and the reach of its soft edge (rows 0-9)."""
    image = torch.empty(24, 20, 3)
    shade = torch.ones(24)
    shade[6:14] = torch.linspace(0.95, 0.6, 8)
    image[:14] = torch.tensor([0.8, 0.62, 0.3]) * shade[:14, None, None]
    image[14:] = torch.tensor(below)
    image[:, :2] = image[:, -2:] = 1.0
    image += 0.02 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    head = torch.zeros(24, 20, dtype=torch.bool)
    head[:, 2:-2] = True
    crown, hair_edge = torch.zeros_like(head), torch.zeros_like(head)
    crown[:7, 2:-2] = True
    hair_edge[:10, 2:-2] = True
    return image, head, crown, hair_edge


def test_colour_growth_takes_in_a_part_s_shadowed_side_and_keeps_to_the_part():
    """Blonde hair whose lower rows darken into shadow above dark skin, as a bob's lower sides do. The relevance's
    inside covers the lit crown and its soft edge reaches the first shadowed rows. Compared by lightness and seeded
    with the rest of the head as probably outside, GrabCut put the shadowed hair with the skin (half the hair
    grown); with the soft edge probably inside and lightness weighed less than hue, all of the hair and none of the
    skin. A skin prompt's soft edge reaching into the hair does not take the hair in."""
    image, head, crown, hair_edge = _shadowed_hair_over((0.36, 0.22, 0.14))
    weight = EditRegionConfig().growth_lightness_weight
    grown = grow_by_colour(image, crown, head, hair_edge, weight)
    assert grown[:14, 2:-2].all() and not grown[14:].any() and not grown[:, :2].any()
    assert grow_by_colour(image, crown, head)[:14, 2:-2].float().mean() <= 0.75  # each change alone falls short
    assert grow_by_colour(image, crown, head, hair_edge)[:14, 2:-2].float().mean() <= 0.75
    assert grow_by_colour(image, crown, head, None, weight)[:14, 2:-2].float().mean() <= 0.75
    skin, skin_edge = torch.zeros_like(head), torch.zeros_like(head)
    skin[17:, 2:-2] = True
    skin_edge[12:, 2:-2] = True
    grown = grow_by_colour(image, skin, head, skin_edge, weight)
    assert grown[14:, 2:-2].all() and not grown[:14].any()


def test_colour_growth_keeps_out_what_the_relevance_surely_leaves_out_whatever_its_colour():
    """The shadowed hair over a neck of nearly its colour: from the hair's soft edge the growth takes the neck in
    too, unless the neck's least relevant rows are surely outside; then the hair is grown and the neck stays out."""
    image, head, crown, hair_edge = _shadowed_hair_over((0.42, 0.3, 0.17))
    unreached = torch.zeros_like(head)
    unreached[17:, 2:-2] = True
    weight = EditRegionConfig().growth_lightness_weight
    assert grow_by_colour(image, crown, head, hair_edge, weight)[14:, 2:-2].all()
    grown = grow_by_colour(image, crown, head, hair_edge, weight, unreached)
    assert grown[:14, 2:-2].all() and not grown[14:].any()


def test_otsu_threshold_splits_two_groups_of_values_between_them():
    generator = torch.Generator().manual_seed(0)
    low = 0.1 + 0.03 * torch.randn(3000, generator=generator)
    high = 0.8 + 0.05 * torch.randn(1000, generator=generator)
    threshold = otsu_threshold(torch.cat([low, high]))
    # Every split in the gap separates the groups alike; OpenCV's Otsu gives 0.22 on the same values.
    assert float(low.max()) < threshold < float(high.min())
    assert otsu_threshold(torch.full((10,), 0.5)) == 0.5


def test_the_region_keyframes_are_the_first_frames_or_all_when_there_are_none():
    from avatarstudio_ns.data.keyframes import Keyframe
    from avatarstudio_ns.edit.region import region_keyframes

    first = [Keyframe(c, 0, 0.0) for c in range(3)]
    later = [Keyframe(4, t, t / 9, source="time") for t in (3, 9)]
    assert region_keyframes(first + later, EditRegionConfig()) == [0, 1, 2]
    assert region_keyframes(first + later, EditRegionConfig(first_frame_only=False)) == [0, 1, 2, 3, 4]
    assert region_keyframes(later, EditRegionConfig()) == [0, 1]


def test_each_keyframe_votes_once_for_the_points_it_sees(monkeypatch):
    """A point two keyframes of three put just inside is in the region; one that a single keyframe finds very
    relevant and two leave out is not (averaging the relevance itself had it the other way round)."""
    import avatarstudio_ns.edit.region as region_module

    # 64 canonical points three voxels apart, so that no two share a voxel's neighbourhood; every keyframe sees all.
    index = torch.stack(torch.meshgrid(*[torch.arange(4) * 3] * 3, indexing="ij"), dim=-1).reshape(64, 3)
    positions = (index.float() / 15.0 * 2.0 - 1.0).reshape(8, 8, 3)
    config = EditRegionConfig(split_by_distribution=False, threshold=0.5, softness=0.2, colour_growth=False)
    top = config.threshold + config.softness / 2  # the lowest relevance that is fully inside
    relevance = torch.zeros(3, 64)
    relevance[:, 20:] = 1.0  # the part, every keyframe agrees
    relevance[:2, :16] = top  # two of three keyframes: just inside; the third: out
    relevance[0, 16] = 3.0  # one keyframe: far inside; the other two: out
    relevance[:, 17:20] = 0.0
    calls = iter(range(3))

    class Surfaces:
        background_color = torch.ones(3)
        edit_region = EditRegion(AABB, resolution=16)

        def canonical_surface(self, camera):
            return positions, torch.ones(8, 8), torch.full((8, 8, 3), 0.5)

    class Base:
        def embed(self, prompt):
            return torch.zeros(1, 1, 1)

    monkeypatch.setattr(region_module, "prompt_relevance", lambda *a, **k: relevance[next(calls)].reshape(1, 8, 8))
    model = Surfaces()
    region_module.fit_edit_region(model, [None] * 3, Base(), "photo of a person with blue hair", config)
    values = model.edit_region(positions.reshape(64, 3))[:, 0]
    assert bool((values[:16] > 0.75).all()), values[:16]
    assert float(values[16]) < 0.25
    assert bool((values[17:20] == 0).all()) and bool((values[20:] == 1).all())


def test_each_keyframe_keeps_out_only_its_own_least_relevant_pixels(monkeypatch):
    """Two keyframes of blonde hair shadowed above dark skin. The front one finds the hair relevant and its face weakly
    so; the side one finds its crown relevant, the next rows on the soft edge and its lowest hair less relevant than
    the front's face, among the least relevant pixels of both. Surely outside by the whole set's measure, the side's
    lowest hair stayed out of the region whatever its colour; with only the side's own least relevant pixels (its
    neck) surely outside, it is grown with the crown, and the skin still stays out."""
    import avatarstudio_ns.edit.region as region_module

    image, head, _, _ = _shadowed_hair_over((0.36, 0.22, 0.14))  # hair rows 0-13, skin rows 14-23
    front, side = torch.zeros(24, 20), torch.zeros(24, 20)
    front[:14], front[14:] = 1.0, 0.3
    side[:5], side[5:10], side[10:14], side[14:20], side[20:] = 1.0, 0.25, 0.12, 0.05, 0.0  # soft edge from row 5
    # Each keyframe's pixels at canonical points of their own, a voxel apart.
    rows, cols = torch.meshgrid(torch.arange(24), torch.arange(20), indexing="ij")
    grid = torch.stack([cols, rows], dim=-1).float() / 32.0 * 2.0 - 0.9
    surfaces = [torch.cat([grid, torch.full((24, 20, 1), z)], dim=-1) for z in (-0.5, 0.5)]
    surface_calls, relevance_calls = iter(surfaces), iter([front, side])

    class Surfaces:
        background_color = torch.ones(3)
        edit_region = EditRegion(AABB, resolution=64)

        def canonical_surface(self, camera):
            return next(surface_calls), head.float(), image

    class Base:
        def embed(self, prompt):
            return torch.zeros(1, 1, 1)

    model = Surfaces()
    monkeypatch.setattr(region_module, "prompt_relevance", lambda *a, **k: next(relevance_calls)[None])
    region_module.fit_edit_region(model, [None] * 2, Base(), "photo of a person with blue hair", EditRegionConfig())
    side_region = model.edit_region(surfaces[1].reshape(-1, 3))[:, 0].reshape(24, 20)
    assert bool((side_region[:14, 3:-3] > 0.5).all()), side_region[:14, 3:-3]
    assert bool((side_region[14:, 3:-3] < 0.5).all()), side_region[14:, 3:-3]
