"""Exact rendering of the synthetic head: sphere tracing of its analytic SDF, on the CPU.

Each pixel is traced once through its centre; pixels whose label differs from a 4-neighbour (silhouette
and part boundaries) are traced again at a grid of sub-pixel positions and averaged, which antialiases
the image and gives the foreground mask fractional coverage at the edges. Labels and canonical points
come from the centre sample, so a pixel's label is never background where its mask is one and never
foreground where its mask is zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, UInt8
from torch import Tensor

from avatarstudio_ns.data import labels as L
from avatarstudio_ns.data.synth.head import SynthHead
from avatarstudio_ns.data.synth.performance import NECK_PIVOT, HeadState, Performance
from avatarstudio_ns.data.synth.rig import Rig
from avatarstudio_ns.threads import torch_threads


@dataclass(frozen=True)
class RenderSettings:
    """How the head is traced and lit."""

    supersample: int = 2
    """Sub-pixel grid (per axis) traced at edge pixels; 1 turns antialiasing off."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Backdrop colour the image is composited on, RGB in [0, 1]."""
    lights_follow_head: bool = True
    """Light the head in its own frame, so a canonical point keeps its diffuse colour over time (only
    the small specular highlight depends on the view). False fixes the lights in the world."""
    max_steps: int = 64
    """Sphere-tracing step limit."""
    step_scale: float = 0.9
    """Fraction of the SDF value stepped; below one because the warped SDF is only a bound."""
    epsilon: float = 3e-4
    """Hit threshold, metres (a pixel spans about 1.3 mm on the head at 256 px)."""
    coarse_spacing: float = 0.004
    """Coarse-to-fine tracing: a first pass traces every k-th pixel so that samples are at most this
    far apart on the head (metres); full-resolution rays then start just before the nearest coarse
    hit around them and skip pixels whose coarse neighbourhood is all background. 0 disables it."""
    coarse_margin: float = 0.015
    """How far before the nearest neighbouring coarse hit a full-resolution ray starts, metres."""
    chunk: int = 1 << 16
    """Rays traced at once. Small enough that the working set stays in cache, which matters more
    than batch size for the many small elementwise ops of the SDF."""
    threads: int = 1
    """Torch intra-op threads while rendering. One is fastest for these cache-sized elementwise
    batches (measured several times faster than two on a shared 2-core machine); parallelise over
    frames instead."""


@dataclass
class SynthViews:
    """Rendered views; leading dims are (cameras,) for one time or (times, cameras) for several."""

    rgb: Float[Tensor, "*bs H W 3"]
    """Colour composited on the background, in [0, 1]."""
    mask: Float[Tensor, "*bs H W"]
    """Foreground coverage in [0, 1]."""
    labels: UInt8[Tensor, "*bs H W"]
    """Semantic label of the pixel centre."""
    canonical: Float[Tensor, "*bs H W 3"]
    """Canonical-frame surface point of the pixel centre, metres; NaN on background."""
    shading: Float[Tensor, "*bs H W"]
    """Grey factor the pixel centre's named albedo is shown at (see :class:`ShadedRays`); 0 on background."""
    specular: Float[Tensor, "*bs H W"]
    """Grey highlight added at the pixel centre; 0 on background."""


@dataclass
class ShadedRays:
    """Per-ray results of shade_rays."""

    hit: Bool[Tensor, "*bs"]
    """Whether the ray hit the head."""
    depth: Float[Tensor, "*bs"]
    """Distance along the ray to the hit; inf where missed."""
    rgb: Float[Tensor, "*bs 3"]
    """Shaded colour; the background where missed."""
    labels: UInt8[Tensor, "*bs"]
    """Label ids; 0 where missed."""
    canonical: Float[Tensor, "*bs 3"]
    """Canonical-frame hit points; NaN where missed."""
    shading: Float[Tensor, "*bs"]
    """Grey factor the named albedo of the hit's part (``SynthHead.albedo``: the hair colour, the skin tone) is
    shown at: the light times the procedural detail (hair strands, the iris' limbus). A head whose part had another
    named colour c would show ``c * shading + specular`` here; 0 where missed."""
    specular: Float[Tensor, "*bs"]
    """Grey highlight added to the shaded albedo; 0 where missed."""


# Lights in the head (or world) frame: direction toward the light, strength.
_LIGHTS = (((0.45, 0.55, 0.75), 0.62), ((-0.7, 0.15, 0.45), 0.25), ((0.0, 0.45, -0.9), 0.3))
_AMBIENT = 0.32
_TETRA = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]])


def _to_head(state: HeadState, points: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
    """World rays to the head frame: head = R^T (world - pivot) + pivot."""
    rot = torch.as_tensor(state.rotation(), dtype=torch.float32)
    pivot = torch.as_tensor(NECK_PIVOT, dtype=torch.float32)
    return (points - pivot) @ rot + pivot, dirs @ rot


def sphere_trace(
    head: SynthHead,
    state: HeadState,
    origins: Float[Tensor, "*bs 3"],
    dirs: Float[Tensor, "*bs 3"],
    settings: RenderSettings = RenderSettings(),
    t_min: Float[Tensor, "*bs"] | None = None,
) -> tuple[Bool[Tensor, "*bs"], Float[Tensor, "*bs"]]:
    """Trace head-frame rays against the animated head.

    Args:
        head: the identity.
        state: the instant.
        origins: ray origins in the head frame.
        dirs: unit ray directions in the head frame.
        settings: tracing settings.
        t_min: optional distance each ray starts at (inf: do not trace, report a miss).

    Returns:
        hit flags and ray distances to the surface (meaningless where not hit).
    """
    n = origins.shape[0]
    # Culling: only rays that enter a bounding ellipsoid are marched, from the first entry to the
    # last exit.
    t_near = torch.full((n,), float("inf"))
    t_exit = torch.full((n,), -float("inf"))
    for center, radii in head.bounds():
        inv_r = 1.0 / torch.tensor(radii)
        oc = (origins - torch.tensor(center)) * inv_r
        dc = dirs * inv_r
        a = (dc * dc).sum(-1)
        b = (oc * dc).sum(-1)
        disc = b * b - a * ((oc * oc).sum(-1) - 1.0)
        sq = disc.clamp_min(0).sqrt()
        inside = disc > 0
        t_near = torch.where(inside, torch.minimum(t_near, (-b - sq) / a), t_near)
        t_exit = torch.where(inside, torch.maximum(t_exit, (-b + sq) / a), t_exit)
    t = t_near.clamp_min(0)
    if t_min is not None:
        t = torch.maximum(t, t_min)
    enters = t_exit > t
    hit = torch.zeros(n, dtype=torch.bool)
    idx = torch.nonzero(enters).squeeze(-1)
    t_a, t_far = t[idx], t_exit[idx]
    o_a, d_a = origins[idx], dirs[idx]
    for _ in range(settings.max_steps):
        if idx.numel() == 0:
            break
        p = o_a + t_a[:, None] * d_a
        dist = head.sdf(p[:, 0], p[:, 1], p[:, 2], state)
        done = dist < settings.epsilon
        hit[idx[done]] = True
        t[idx[done]] = t_a[done]
        t_a = t_a + settings.step_scale * dist
        keep = ~done & (t_a < t_far)
        idx, t_a, t_far, o_a, d_a = idx[keep], t_a[keep], t_far[keep], o_a[keep], d_a[keep]
    return hit, t


def _normals(head: SynthHead, state: HeadState, p: Tensor, eps: float = 2.5e-4) -> Tensor:
    """SDF gradient by the four-tap tetrahedron stencil."""
    k = _TETRA * eps
    q = (p[:, None, :] + k[None]).reshape(-1, 3)
    d = head.sdf(q[:, 0], q[:, 1], q[:, 2], state).reshape(-1, 4, 1)
    g = (d * _TETRA[None]).sum(1)
    return g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def shade_rays(
    head: SynthHead,
    state: HeadState,
    origins: Float[Tensor, "*bs 3"],
    dirs: Float[Tensor, "*bs 3"],
    settings: RenderSettings = RenderSettings(),
    t_min: Float[Tensor, "*bs"] | None = None,
) -> ShadedRays:
    """Trace and shade world-space rays at one instant.

    Args:
        head: the identity.
        state: the instant.
        origins: world ray origins.
        dirs: unit world ray directions.
        settings: tracing and lighting settings.
        t_min: optional start distance per ray, see sphere_trace.

    Returns:
        The shaded rays.
    """
    o_h, d_h = _to_head(state, origins, dirs)
    n = origins.shape[0]
    rgb = torch.tensor(settings.background, dtype=torch.float32).expand(n, 3).clone()
    labels = torch.zeros(n, dtype=torch.uint8)
    canonical = torch.full((n, 3), float("nan"))
    hits = torch.zeros(n, dtype=torch.bool)
    depth = torch.full((n,), float("inf"))
    shading = torch.zeros(n)
    specular = torch.zeros(n)
    for start in range(0, n, settings.chunk):
        sl = slice(start, start + settings.chunk)
        hit, t = sphere_trace(head, state, o_h[sl], d_h[sl], settings, None if t_min is None else t_min[sl])
        hits[sl] = hit
        depth[sl] = torch.where(hit, t, depth[sl])
        if not hit.any():
            continue
        hi = torch.nonzero(hit).squeeze(-1) + start
        view = d_h[hi]
        p = o_h[hi] + t[hi - start, None] * view
        surf = head.surface(p[:, 0], p[:, 1], p[:, 2], state)
        normal = _normals(head, state, p)
        light = torch.full((hi.numel(),), _AMBIENT) * (0.8 + 0.2 * normal[:, 1])
        spec = torch.zeros(hi.numel())
        rot = None if settings.lights_follow_head else torch.as_tensor(state.rotation(), dtype=torch.float32)
        for direction, strength in _LIGHTS:
            ldir = torch.tensor(direction)
            ldir = ldir / ldir.norm()
            if rot is not None:
                ldir = rot.T @ ldir  # world-fixed light, expressed in the head frame
            light = light + strength * (normal @ ldir).clamp_min(0.0)
            half = ldir[None] - view
            half = half / half.norm(dim=-1, keepdim=True)
            spec = spec + strength * (normal * half).sum(-1).clamp_min(0.0) ** 40
        rgb[hi] = (surf.albedo * light[:, None] + surf.shininess[:, None] * spec[:, None]).clamp(0.0, 1.0)
        labels[hi] = surf.labels.to(torch.uint8)
        canonical[hi] = surf.canonical
        # The detail as a grey factor on the part's named albedo: least squares, exact for the grey factors (strands,
        # limbus), nearly so for the skin's faint blush.
        named = head.albedo[surf.labels.long()]
        detail = (surf.albedo * named).sum(-1) / (named * named).sum(-1).clamp_min(1e-8)
        shading[hi] = light * detail
        specular[hi] = surf.shininess * spec
    return ShadedRays(
        hit=hits, depth=depth, rgb=rgb, labels=labels, canonical=canonical, shading=shading, specular=specular
    )


def render_frame(
    head: SynthHead, rig: Rig, state: HeadState, settings: RenderSettings = RenderSettings()
) -> SynthViews:
    """Render every camera of the rig at one instant; leading dim of the result is the camera."""
    with torch_threads(settings.threads), torch.no_grad():
        return _render_frame(head, rig, state, settings)


def _min_pool3(t: Tensor) -> Tensor:
    """Minimum over each 3x3 neighbourhood of a (C, H, W) map (inf counts as empty)."""
    return -torch.nn.functional.max_pool2d(-t[:, None], 3, stride=1, padding=1)[:, 0]


def _render_frame(head: SynthHead, rig: Rig, state: HeadState, settings: RenderSettings) -> SynthViews:
    c, h, w = rig.num_cameras, rig.height, rig.width
    cam, v, u = torch.meshgrid(torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij")
    cam, u, v = cam.reshape(-1), u.reshape(-1).float() + 0.5, v.reshape(-1).float() + 0.5
    # Coarse pass: pixel stride k chosen from the footprint of a pixel on the head.
    pixel_size = float(np.linalg.norm(rig.camera_to_world[:, :3, 3], axis=-1).min()) / rig.fx
    stride = int(settings.coarse_spacing / pixel_size) if settings.coarse_spacing > 0 else 1
    t_start = None
    if stride >= 2:
        # One coarse sample per stride x stride block, at (or, in a partial last block, near) its middle.
        rows = (torch.arange(0, h, stride) + stride // 2).clamp_max(h - 1)
        cols = (torch.arange(0, w, stride) + stride // 2).clamp_max(w - 1)
        ccam, cv, cu = torch.meshgrid(torch.arange(c), rows, cols, indexing="ij")
        co, cd = rig.pixel_rays(ccam.reshape(-1), cu.reshape(-1).float() + 0.5, cv.reshape(-1).float() + 0.5)
        co, cd = _to_head(state, co, cd)
        chit, ct = [], []
        for s0 in range(0, co.shape[0], settings.chunk):
            hit_c, t_c = sphere_trace(head, state, co[s0 : s0 + settings.chunk], cd[s0 : s0 + settings.chunk], settings)
            chit.append(hit_c)
            ct.append(t_c)
        t_coarse = torch.where(torch.cat(chit), torch.cat(ct), float("inf")).view(ccam.shape)
        near = _min_pool3(t_coarse).repeat_interleave(stride, 1).repeat_interleave(stride, 2)[:, :h, :w]
        t_start = (near - settings.coarse_margin).reshape(-1)
    origins, dirs = rig.pixel_rays(cam, u, v)
    centre = shade_rays(head, state, origins, dirs, settings, t_start)
    labels, depth = centre.labels, centre.depth
    rgb_sum = centre.rgb.clone()
    coverage = centre.hit.float()
    count = torch.ones(c * h * w)
    if settings.supersample > 1:
        lab = labels.view(c, h, w)
        padded = torch.nn.functional.pad(lab[:, None].float(), (1, 1, 1, 1), mode="replicate")[:, 0]
        edge = torch.zeros(c, h, w, dtype=torch.bool)
        for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
            edge |= padded[:, dy : dy + h, dx : dx + w] != lab.float()
        ei = torch.nonzero(edge.reshape(-1)).squeeze(-1)
        if ei.numel():
            s = settings.supersample
            grid = (torch.arange(s, dtype=torch.float32) + 0.5) / s - 0.5
            oy, ox = torch.meshgrid(grid, grid, indexing="ij")
            su = (u[ei, None] + ox.reshape(1, -1)).reshape(-1)
            sv = (v[ei, None] + oy.reshape(1, -1)).reshape(-1)
            so, sd = rig.pixel_rays(cam[ei].repeat_interleave(s * s), su, sv)
            # Every edge pixel has a hit among itself and its neighbours: start just before it.
            sub_start = (_min_pool3(depth.view(c, h, w)).reshape(-1)[ei] - settings.coarse_margin).clamp_min(0)
            sub = shade_rays(head, state, so, sd, settings, sub_start.repeat_interleave(s * s))
            rgb_sum.index_add_(0, ei, sub.rgb.view(-1, s * s, 3).sum(1))
            coverage.index_add_(0, ei, sub.hit.view(-1, s * s).float().sum(1))
            count[ei] += s * s
    return SynthViews(
        rgb=(rgb_sum / count[:, None]).view(c, h, w, 3),
        mask=(coverage / count).view(c, h, w),
        labels=labels.view(c, h, w),
        canonical=centre.canonical.view(c, h, w, 3),
        shading=centre.shading.view(c, h, w),
        specular=centre.specular.view(c, h, w),
    )


def render_views(
    head: SynthHead,
    rig: Rig,
    times: Sequence[float] | Sequence[HeadState],
    performance: Performance | None = None,
    settings: RenderSettings = RenderSettings(),
) -> SynthViews:
    """Render every camera at every time; the result's leading dims are (times, cameras).

    Args:
        head: the identity.
        rig: the cameras.
        times: normalised times in [0, 1] (evaluated with ``performance``) or ready head states.
        performance: the performance that turns times into states; default Performance().
        settings: tracing and lighting settings.
    """
    performance = performance or Performance()
    views = [
        render_frame(head, rig, t if isinstance(t, HeadState) else performance.state(float(t)), settings) for t in times
    ]
    return SynthViews(
        rgb=torch.stack([v.rgb for v in views]),
        mask=torch.stack([v.mask for v in views]),
        labels=torch.stack([v.labels for v in views]),
        canonical=torch.stack([v.canonical for v in views]),
        shading=torch.stack([v.shading for v in views]),
        specular=torch.stack([v.specular for v in views]),
    )


def label_palette() -> np.ndarray:
    """A distinct display colour per label id, (num_labels, 3) uint8, for previews."""
    palette = np.array(
        [
            [255, 255, 255],
            [230, 180, 150],
            [120, 70, 30],
            [60, 30, 10],
            [240, 240, 240],
            [40, 120, 220],
            [0, 0, 0],
            [220, 40, 60],
            [120, 0, 40],
            [250, 140, 80],
            [180, 140, 110],
        ],
        dtype=np.uint8,
    )
    assert len(palette) == len(L.LABELS)
    return palette
