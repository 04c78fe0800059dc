"""Window plans: how a raster is cut into pieces that fit a memory budget.

Windows are aligned to a grid step (the block size, so no block straddles two windows) and, where it costs
nothing, to the input's own block height so each compressed block is decoded once.
"""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    xoff: int
    yoff: int
    width: int
    height: int

    def grown(self, halo, raster_width, raster_height):
        """This window grown by ``halo`` pixels on every side, clipped to the raster."""
        x0, y0 = max(0, self.xoff - halo), max(0, self.yoff - halo)
        x1 = min(raster_width, self.xoff + self.width + halo)
        y1 = min(raster_height, self.yoff + self.height + halo)
        return Window(x0, y0, x1 - x0, y1 - y0)


def plan_windows(width, height, max_pixels, step=1, row_step=None):
    """Cover a ``width`` x ``height`` raster with windows of at most about ``max_pixels`` pixels.

    Full-width strips when a strip of at least ``step`` rows fits (sequential reads, one window per row
    band); square tiles otherwise. Offsets are multiples of ``step``; strip heights are multiples of
    ``row_step`` (itself a multiple of ``step``) when the budget allows.
    """
    step = max(1, int(step))
    row_step = step if not row_step else step * row_step // math.gcd(step, row_step)
    max_pixels = max(int(max_pixels), step * step)
    if width * step <= max_pixels:
        rows = max_pixels // width
        unit = row_step if rows >= row_step else step
        rows = max(unit, rows // unit * unit)
        return [Window(0, y, width, min(rows, height - y)) for y in range(0, height, rows)]
    side = max(step, int(math.sqrt(max_pixels)) // step * step)
    return [
        Window(x, y, min(side, width - x), min(side, height - y))
        for y in range(0, height, side)
        for x in range(0, width, side)
    ]
