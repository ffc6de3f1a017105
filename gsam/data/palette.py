"""Class colours for masks and overlays (no heavy imports: the CLI and the runtime use it)."""

from __future__ import annotations

import colorsys


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct colours: black background, then well-separated hues (golden-ratio steps)."""
    colours = [(0, 0, 0)]
    for i in range(1, num_classes):
        r, g, b = colorsys.hsv_to_rgb(((i - 1) * 0.618034) % 1.0, 0.85, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours[:num_classes]
