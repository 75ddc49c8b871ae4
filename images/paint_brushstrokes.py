"""Paint the style image: short brush strokes that follow a swirling flow field.

Run from the project root: python images/paint_brushstrokes.py
Writes images/swirling_brushstrokes.jpg (800x600) and images/swirling_brushstrokes_400x300.jpg.
Deterministic (fixed seed); the picture is this project's own work.
"""
import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT = 800, 600
SWIRLS = [(220, 170, 110, 1.0), (560, 250, 140, -1.0), (380, 470, 90, 1.0)]  # x, y, radius, spin
NIGHT = [(18, 38, 110), (30, 70, 160), (52, 110, 190), (95, 150, 205), (20, 30, 70)]
LIGHT = [(250, 215, 70), (245, 240, 190), (235, 170, 40), (200, 225, 235)]


def flow_angle(x, y):
    """Direction of the strokes at (x, y): circles around each swirl plus a gentle wave."""
    angle = 0.35 * np.sin(y / 60.0) + 0.25 * np.cos(x / 85.0)
    vx, vy = np.cos(angle), np.sin(angle)
    for cx, cy, radius, spin in SWIRLS:
        dx, dy = x - cx, y - cy
        pull = np.exp(-(dx * dx + dy * dy) / (2 * (1.6 * radius) ** 2))
        vx += 3 * pull * -dy * spin / radius
        vy += 3 * pull * dx * spin / radius
    return np.arctan2(vy, vx)


def swirl_glow(x, y):
    """1 at a swirl's centre, falling to 0 at its radius: where light colours are used."""
    return max(max(0.0, 1 - np.hypot(x - cx, y - cy) / r) for cx, cy, r, _ in SWIRLS)


def paint(seed=2015):
    rng = np.random.default_rng(seed)
    canvas = Image.new("RGB", (WIDTH, HEIGHT), NIGHT[0])
    draw = ImageDraw.Draw(canvas)
    for _ in range(14000):
        x, y = rng.uniform(-20, WIDTH + 20), rng.uniform(-20, HEIGHT + 20)
        palette = LIGHT if rng.random() < 0.9 * swirl_glow(x, y) + 0.04 else NIGHT
        base = np.array(palette[rng.integers(len(palette))], float)
        colour = tuple(int(c) for c in np.clip(base + rng.normal(0, 12, 3), 0, 255))
        points = [(x, y)]
        for _ in range(rng.integers(4, 10)):
            angle = flow_angle(x, y)
            x, y = x + 4 * np.cos(angle), y + 4 * np.sin(angle)
            points.append((x, y))
        draw.line(points, fill=colour, width=int(rng.integers(3, 7)), joint="curve")
    return canvas


if __name__ == "__main__":
    picture = paint()
    picture.save("images/swirling_brushstrokes.jpg", quality=92)
    picture.resize((400, 300), Image.LANCZOS).save("images/swirling_brushstrokes_400x300.jpg",
                                                   quality=92)
