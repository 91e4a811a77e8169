"""Drawing a scene: the shapes with Pillow on a dark, softly textured background.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from vlp.world.scene import Scene, WorldObject, star_points
from vlp.world.vocab import COLOURS, GENERATOR_VERSION


def _draw(draw: ImageDraw.ImageDraw, obj: WorldObject) -> None:
    x0, y0, x1, y1 = obj.box
    xe, ye = x1 - 1, y1 - 1  # Pillow boxes include their last pixel
    cx, cy = (x0 + xe) / 2, (y0 + ye) / 2
    fill = COLOURS[obj.colour]
    if obj.shape == "circle":
        draw.ellipse((x0, y0, xe, ye), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, xe, ye), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(cx, y0), (xe, ye), (x0, ye)], fill=fill)
    elif obj.shape == "diamond":
        draw.polygon([(cx, y0), (xe, cy), (cx, ye), (x0, cy)], fill=fill)
    elif obj.shape == "star":
        draw.polygon(star_points(obj.box), fill=fill)
    else:  # cross: two bars a third of the side thick
        t = obj.side / 6
        draw.rectangle((x0, round(cy - t), xe, round(cy + t)), fill=fill)
        draw.rectangle((round(cx - t), y0, round(cx + t), ye), fill=fill)


def _background(seed: int, image_id: int, image_size: int) -> np.ndarray:
    """A dark grey, slightly tinted background with a soft vertical gradient and faint noise."""
    g = np.random.default_rng([GENERATOR_VERSION, seed, image_id])
    base = g.integers(60, 110) + g.integers(-8, 9, size=3)  # (3,)
    ramp = np.linspace(-1.0, 1.0, image_size) * g.uniform(0.0, 12.0)  # (H,)
    noise = g.normal(0.0, 3.0, size=(image_size, image_size, 3))  # (H, W, 3)
    pixels = base[None, None, :] + ramp[:, None, None] + noise  # (H, W, 3)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def render_scene(scene: Scene, seed: int, image_id: int) -> Image.Image:
    """Draw ``scene`` on its background.

    Args:
        scene: the scene to draw.
        seed: the world's seed (with ``image_id`` it seeds the background texture).
        image_id: the image's id.

    Returns:
        An RGB image of ``scene.image_size`` × ``scene.image_size`` pixels.
    """
    img = Image.fromarray(_background(seed, image_id, scene.image_size), mode="RGB")
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        _draw(draw, obj)
    return img
