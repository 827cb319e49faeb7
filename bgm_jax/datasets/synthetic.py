"""Procedural matting samples: foreground, alpha and background as plain numpy arrays.

No files, no downloads, no TensorFlow: ``make_sample(seed, height, width)`` returns one
``dict(fgr=uint8 HxWx3, pha=uint8 HxW, bgr=uint8 HxWx3)`` and ``make_clip`` a short video of a subject
moving in front of a static background. The same seed always gives the same arrays.

Each subject is a head-and-shoulders silhouette built to exercise what matting models find hard:

- soft edges of varying width (wide on the head, narrow on the body);
- thin hair-like strands, thinner than a pixel in places, so alpha takes fractional values along them;
- a semi-transparent veil (alpha well inside (0, 1) over an area, not only along edges);
- a hole through the body (alpha 0 enclosed by alpha 1, like the gap between an arm and the torso);
- coloured, textured clothing and skin, on top of backgrounds that are smooth gradients, stripes,
  checks, noise or clutter.

Foreground colour is premultiplied-correct: where several layers overlap, ``fgr`` is the colour that
``pha * fgr + (1 - pha) * bgr`` needs to reproduce the layered picture exactly. Where ``pha == 0``
``fgr`` continues the clothing texture (as in real matting datasets, whose foregrounds are defined
beyond the subject), so nothing depends on its value there.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw

# Supersampling factor for drawing strands: they are drawn with whole-pixel line widths on a canvas
# this much larger and box-filtered down, which gives sub-pixel widths and fractional coverage.
_STRAND_SUPERSAMPLE = 4


def make_sample(seed: int, height: int = 256, width: int = 256) -> dict[str, np.ndarray]:
    """One synthetic matting sample.

    Args:
      seed: any non-negative integer; equal seeds give equal arrays.
      height, width: output size in pixels (at least 16 each).

    Returns:
      ``dict(fgr=uint8 (H, W, 3), pha=uint8 (H, W), bgr=uint8 (H, W, 3))``.
    """
    _check_size(height, width)
    rng = np.random.default_rng([int(seed), 0x5A3])
    subject = _random_subject(rng, height, width)
    bgr = _render_background(rng, height, width)
    fgr, pha = _render_subject(subject, height, width, t=0.0)
    return {"fgr": _to_uint8(fgr), "pha": _to_uint8(pha), "bgr": _to_uint8(bgr)}


def make_clip(seed: int, num_frames: int = 8, height: int = 256, width: int = 256) -> dict[str, np.ndarray]:
    """A short clip of one subject moving (drifting, bobbing, hair swaying) over a static background.

    Returns:
      ``dict(fgr=uint8 (T, H, W, 3), pha=uint8 (T, H, W), bgr=uint8 (H, W, 3))``; the background is
      one static plate, as captured for background matting.
    """
    _check_size(height, width)
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    rng = np.random.default_rng([int(seed), 0xC11])
    subject = _random_subject(rng, height, width)
    bgr = _render_background(rng, height, width)
    fgrs, phas = [], []
    for frame in range(num_frames):
        fgr, pha = _render_subject(subject, height, width, t=frame / max(num_frames - 1, 1))
        fgrs.append(_to_uint8(fgr))
        phas.append(_to_uint8(pha))
    return {"fgr": np.stack(fgrs), "pha": np.stack(phas), "bgr": _to_uint8(bgr)}


def composite(fgr: np.ndarray, pha: np.ndarray, bgr: np.ndarray) -> np.ndarray:
    """``pha * fgr + (1 - pha) * bgr`` on uint8 arrays (pha HxW or HxWx1), rounded back to uint8."""
    alpha = pha.astype(np.float32)[..., None] / 255.0 if pha.ndim == fgr.ndim - 1 else pha / 255.0
    out = alpha * fgr.astype(np.float32) + (1.0 - alpha) * bgr.astype(np.float32)
    return _to_uint8(out / 255.0)


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of a subject: ``coverage`` (float HxW in [0, 1]) and the ``colour`` it is painted
    with (float32 HxWx3 or one RGB triple, in [0, 1]). Names: ``torso`` (clothing, with the hole),
    ``head`` (skin), ``veil`` (semi-transparent), ``strands`` (hair)."""

    name: str
    coverage: np.ndarray
    colour: np.ndarray


def subject_layers(seed: int, height: int = 256, width: int = 256) -> list[Layer]:
    """The layers, back to front, of the subject of ``make_sample(seed, height, width)``.

    A hook for datasets that paint the same shapes differently: replace each layer's ``colour`` (e.g.
    ``dataclasses.replace(layer, colour=texture)``) and :func:`composite_layers` them.
    ``composite_layers(subject_layers(s, h, w))`` is ``make_sample(s, h, w)``'s fgr and pha before
    rounding to uint8.
    """
    _check_size(height, width)
    rng = np.random.default_rng([int(seed), 0x5A3])  # make_sample's stream: the same subject
    return _subject_layers(_random_subject(rng, height, width), height, width, t=0.0)


def composite_layers(layers: list[Layer]) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied "over" of ``layers`` (back to front): float32 (fgr HxWx3, pha HxW) in [0, 1].

    ``fgr`` is the colour that ``pha * fgr + (1 - pha) * bgr`` needs to reproduce the layered picture
    exactly; where ``pha == 0`` it continues the first (back) layer's colour.
    """
    h, w = layers[0].coverage.shape
    premult = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    for layer in layers:
        c = layer.coverage[..., None]
        premult = c * layer.colour + (1.0 - c) * premult
        alpha = layer.coverage + (1.0 - layer.coverage) * alpha
    back = np.broadcast_to(np.asarray(layers[0].colour, np.float32), (h, w, 3))
    fgr = np.where(alpha[..., None] > 1e-6, premult / np.maximum(alpha[..., None], 1e-6), back)
    return np.clip(fgr, 0, 1).astype(np.float32), np.clip(alpha, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Subject description (drawn once from the RNG, rendered at any time t in [0, 1])


@dataclasses.dataclass(frozen=True)
class _Ellipse:
    cx: float
    cy: float
    ax: float  # semi-axis along x
    ay: float  # semi-axis along y
    soft: float  # edge width in pixels


@dataclasses.dataclass(frozen=True)
class _Strand:
    root_angle: float  # where on the head outline it starts (radians, 0 = right, -pi/2 = top)
    direction: float  # initial direction offset from the outward normal (radians)
    curl: float  # change of direction along the strand (radians over its length)
    length: float  # pixels
    width: float  # pixels (fractions of a pixel give fractional alpha)
    opacity: float
    sway_phase: float


@dataclasses.dataclass(frozen=True)
class _Subject:
    head: _Ellipse
    torso: _Ellipse
    hole: _Ellipse
    veil: _Ellipse
    veil_opacity: float
    strands: tuple[_Strand, ...]
    skin: np.ndarray  # RGB in [0, 1]
    hair: np.ndarray
    veil_colour: np.ndarray
    cloth: tuple[np.ndarray, np.ndarray]  # two colours of the clothing pattern
    cloth_pattern: str
    cloth_period: float
    cloth_angle: float
    drift: tuple[float, float]  # total movement over the clip, in pixels
    bob: float  # vertical bobbing amplitude, pixels
    sway: float  # strand sway amplitude, radians


def _random_subject(rng: np.random.Generator, h: int, w: int) -> _Subject:
    s = min(h, w)
    cx = w * rng.uniform(0.35, 0.65)
    head_ay = s * rng.uniform(0.12, 0.18)
    head_ax = head_ay * rng.uniform(0.72, 0.9)
    head_cy = h * rng.uniform(0.3, 0.45)
    head = _Ellipse(cx, head_cy, head_ax, head_ay, soft=max(1.0, s * rng.uniform(0.006, 0.015)))

    # The torso is a wide ellipse whose lower half leaves the frame, like a bust shot.
    torso_ax = head_ax * rng.uniform(2.2, 3.0)
    torso_ay = (h - head_cy) * rng.uniform(0.75, 0.95)
    torso_cy = head_cy + head_ay * 0.8 + torso_ay
    torso = _Ellipse(cx + rng.uniform(-0.1, 0.1) * head_ax, torso_cy, torso_ax, torso_ay, soft=max(1.0, s * 0.003))

    # The hole sits well inside the visible part of the torso so that it is always enclosed.
    torso_top = torso_cy - torso_ay
    hole_ax = torso_ax * rng.uniform(0.1, 0.16)
    hole_ay = hole_ax * rng.uniform(1.2, 1.8)
    hole_side = rng.choice([-1.0, 1.0])
    hole_cy = torso_top + hole_ay + (h - torso_top) * rng.uniform(0.25, 0.4)
    hole_cy = min(hole_cy, h - 2.5 * hole_ay)
    hole = _Ellipse(torso.cx + hole_side * torso_ax * 0.55, hole_cy, hole_ax, hole_ay, soft=max(1.0, s * 0.004))

    # A semi-transparent veil (scarf, glass, smoke) hanging off the shoulder on the other side.
    veil = _Ellipse(
        torso.cx - hole_side * torso_ax * rng.uniform(0.75, 0.95),
        torso_top + torso_ay * rng.uniform(0.15, 0.35),
        torso_ax * rng.uniform(0.3, 0.45),
        torso_ay * rng.uniform(0.25, 0.4),
        soft=max(1.0, s * rng.uniform(0.01, 0.03)),
    )

    n_strands = int(rng.integers(24, 48))
    strands = tuple(
        _Strand(
            root_angle=float(rng.uniform(-math.pi * 0.95, -math.pi * 0.05)),
            direction=float(rng.uniform(-0.6, 0.6)),
            curl=float(rng.uniform(-1.5, 1.5)),
            length=float(head_ay * rng.uniform(0.3, 1.1)),
            width=float(rng.uniform(0.25, 1.5)),
            opacity=float(rng.uniform(0.5, 1.0)),
            sway_phase=float(rng.uniform(0, 2 * math.pi)),
        )
        for _ in range(n_strands)
    )

    skin = np.array([0.55, 0.38, 0.28]) * rng.uniform(0.7, 1.6) + rng.uniform(-0.05, 0.05, 3)
    hair = rng.uniform(0.0, 0.35, 3) + rng.choice([0.0, 0.5]) * np.array([0.8, 0.6, 0.2])
    cloth = (rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3))
    return _Subject(
        head=head,
        torso=torso,
        hole=hole,
        veil=veil,
        veil_opacity=float(rng.uniform(0.35, 0.7)),
        strands=strands,
        skin=np.clip(skin, 0, 1),
        hair=np.clip(hair, 0, 1),
        veil_colour=rng.uniform(0.3, 1.0, 3),
        cloth=cloth,
        cloth_pattern=str(rng.choice(["stripes", "checks", "noise", "plain"])),
        cloth_period=float(s * rng.uniform(0.03, 0.1)),
        cloth_angle=float(rng.uniform(0, math.pi)),
        drift=(float(rng.uniform(-0.15, 0.15) * w), float(rng.uniform(-0.04, 0.04) * h)),
        bob=float(rng.uniform(0.0, 0.02) * h),
        sway=float(rng.uniform(0.1, 0.35)),
    )


# ----------------------------------------------------------------------------------------------
# Rendering


def _render_subject(subject: _Subject, h: int, w: int, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Render (fgr float HxWx3 in [0,1], pha float HxW in [0,1]) at clip time t in [0, 1]."""
    return composite_layers(_subject_layers(subject, h, w, t))


def _subject_layers(subject: _Subject, h: int, w: int, t: float) -> list[Layer]:
    """The subject's layers, back to front, with their procedural colours, at clip time t."""
    dx = subject.drift[0] * (t - 0.5)
    dy = subject.drift[1] * (t - 0.5) + subject.bob * math.sin(2 * math.pi * t)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy += 0.5  # pixel centres
    xx += 0.5

    cloth = _cloth_texture(subject, xx - dx, yy - dy)
    torso = _ellipse_coverage(_moved(subject.torso, dx, dy), xx, yy)
    torso *= 1.0 - _ellipse_coverage(_moved(subject.hole, dx, dy), xx, yy)
    head = _ellipse_coverage(_moved(subject.head, dx, dy), xx, yy)
    veil = _ellipse_coverage(_moved(subject.veil, dx, dy), xx, yy)
    veil *= subject.veil_opacity * (0.75 + 0.25 * np.sin((xx - dx) * 0.21 + (yy - dy) * 0.13))
    strands = _strand_coverage(subject, h, w, dx, dy, t)

    shade = 0.85 + 0.15 * np.clip(1.0 - ((yy - dy - subject.head.cy) / np.float32(max(subject.head.ay, 1))) ** 2 / 4, 0, 1)
    return [  # float32 throughout: float64 colours would double the cost of every layer
        Layer("torso", torso, cloth),
        Layer("head", head, subject.skin.astype(np.float32) * shade[..., None]),
        Layer("veil", veil, subject.veil_colour.astype(np.float32)),
        Layer("strands", strands, subject.hair.astype(np.float32)),
    ]


def _moved(e: _Ellipse, dx: float, dy: float) -> _Ellipse:
    return dataclasses.replace(e, cx=e.cx + dx, cy=e.cy + dy)


def _ellipse_coverage(e: _Ellipse, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] with a linear ramp ``e.soft`` pixels wide across the outline.

    The signed distance to the outline is approximated to first order by f / |grad f| with
    f = (x/ax)^2 + (y/ay)^2 - 1, which is accurate near the outline, where the ramp is.
    """
    x = (xx - e.cx) / e.ax
    y = (yy - e.cy) / e.ay
    f = x * x + y * y - 1.0
    grad = 2.0 * np.sqrt((x / e.ax) ** 2 + (y / e.ay) ** 2) + 1e-6
    distance = f / grad
    return np.clip(0.5 - distance / e.soft, 0.0, 1.0)


def _strand_coverage(subject: _Subject, h: int, w: int, dx: float, dy: float, t: float) -> np.ndarray:
    """Hair strands as polylines drawn on a supersampled canvas around the head, box-filtered down."""
    head = _moved(subject.head, dx, dy)
    reach = max(st.length for st in subject.strands) + 2
    x0 = max(int(head.cx - head.ax - reach), 0)
    x1 = min(int(head.cx + head.ax + reach) + 1, w)
    y0 = max(int(head.cy - head.ay - reach), 0)
    y1 = min(int(head.cy + head.ay * 0.3) + 1, h)
    out = np.zeros((h, w), np.float32)
    if x1 <= x0 or y1 <= y0:
        return out
    k = _STRAND_SUPERSAMPLE
    # One canvas for all strands: at the supersampled scale a strand pixel is either covered or not,
    # so a later strand simply occludes an earlier one there; the box filter then gives coverage.
    layer = Image.new("L", ((x1 - x0) * k, (y1 - y0) * k), 0)
    draw = ImageDraw.Draw(layer)
    for strand in subject.strands:
        points = _strand_points(strand, head, subject.sway * math.sin(2 * math.pi * t + strand.sway_phase))
        scaled = [((px - x0) * k, (py - y0) * k) for px, py in points]
        draw.line(scaled, fill=round(255 * strand.opacity), width=max(1, round(strand.width * k)), joint="curve")
    canvas = np.asarray(layer, np.float32) / 255.0
    small = canvas.reshape(y1 - y0, k, x1 - x0, k).mean(axis=(1, 3))
    out[y0:y1, x0:x1] = small
    return out


def _strand_points(strand: _Strand, head: _Ellipse, sway: float, steps: int = 12) -> list[tuple[float, float]]:
    """Points along a strand from its root on the head outline, curling as it goes."""
    a = strand.root_angle
    x = head.cx + head.ax * math.cos(a) * 0.97
    y = head.cy + head.ay * math.sin(a) * 0.97
    # Outward normal of the ellipse at the root.
    normal = math.atan2(math.sin(a) / head.ay, math.cos(a) / head.ax)
    heading = normal + strand.direction
    points = [(x, y)]
    step = strand.length / steps
    for i in range(steps):
        frac = (i + 1) / steps
        heading += (strand.curl + sway * frac) / steps
        x += step * math.cos(heading)
        y += step * math.sin(heading)
        points.append((x, y))
    return points


def _cloth_texture(subject: _Subject, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    c0, c1 = (np.asarray(c, np.float32) for c in subject.cloth)
    u = xx * math.cos(subject.cloth_angle) + yy * math.sin(subject.cloth_angle)
    v = -xx * math.sin(subject.cloth_angle) + yy * math.cos(subject.cloth_angle)
    p = subject.cloth_period
    if subject.cloth_pattern == "stripes":
        mix = 0.5 + 0.5 * np.tanh(3.0 * np.sin(2 * math.pi * u / p))
    elif subject.cloth_pattern == "checks":
        mix = 0.5 + 0.5 * np.tanh(3.0 * np.sin(2 * math.pi * u / p) * np.sin(2 * math.pi * v / p))
    elif subject.cloth_pattern == "noise":
        mix = 0.5 + 0.25 * (np.sin(u / p * 2.3) * np.sin(v / p * 1.7) + np.sin((u + v) / p * 0.9))
    else:
        mix = np.zeros_like(u)
    return (1.0 - mix[..., None]) * c0 + mix[..., None] * c1


def _render_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A varied background: smooth colour field plus one of several structures, plus fine noise."""
    kind = rng.choice(["gradient", "stripes", "checks", "clutter", "noise"])
    base = _smooth_field(rng, h, w, cells=int(rng.integers(2, 6)))
    if kind == "stripes" or kind == "checks":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        period = min(h, w) * rng.uniform(0.04, 0.2)
        angle = rng.uniform(0, math.pi)
        u = xx * math.cos(angle) + yy * math.sin(angle)
        pattern = np.sin(2 * math.pi * u / period)
        if kind == "checks":
            pattern *= np.sin(2 * math.pi * (-xx * math.sin(angle) + yy * math.cos(angle)) / period)
        other = rng.uniform(0, 1, 3).astype(np.float32)
        mix = (0.5 + 0.5 * np.tanh(4.0 * pattern))[..., None]
        base = (1 - mix) * base + mix * other
    elif kind == "clutter":
        base = _draw_clutter(rng, base)
    elif kind == "noise":
        base = 0.5 * base + 0.5 * _smooth_field(rng, h, w, cells=int(rng.integers(12, 32)))
    noise = rng.normal(0.0, rng.uniform(0.0, 0.03), (h, w, 1)).astype(np.float32)
    return np.clip(base + noise, 0, 1)


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Random colours on a coarse grid, bicubically upsampled: gradients and soft blobs."""
    grid = (rng.uniform(0, 255, (cells, cells, 3))).astype(np.uint8)
    up = Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(up, np.float32) / 255.0


def _draw_clutter(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """Rectangles, discs and lines, like furniture and objects in a room."""
    h, w = base.shape[:2]
    image = Image.fromarray(_to_uint8(base))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(6, 16))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, x1 = sorted(rng.uniform(-0.1, 1.1, 2) * w)
        y0, y1 = sorted(rng.uniform(-0.1, 1.1, 2) * h)
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif shape == 1:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, max(2, min(h, w) // 40))))
    return np.asarray(image, np.float32) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float32) * 255.0), 0, 255).astype(np.uint8)


def _check_size(height: int, width: int) -> None:
    if height < 16 or width < 16:
        raise ValueError(f"synthetic samples need height and width >= 16, got {height}x{width}")


def record_seed(base_seed: int, split_id: int, index: int) -> int:
    """Seed of sample/clip ``index`` of a split: well mixed, independent of the other counts."""
    return int(np.random.SeedSequence([int(base_seed), int(split_id), int(index)]).generate_state(1, np.uint32)[0])
