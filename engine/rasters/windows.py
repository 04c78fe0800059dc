"""Window plans: how a raster is cut into pieces that fit a memory budget.

Windows are aligned to a grid step (the block size, so no block straddles two windows) and, where it costs
nothing, to the input's own block height so each compressed block is decoded once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def cells(size: int, stride: int) -> int:
    """How many ``stride``-pixel cells cover ``size`` pixels (the last one may be partial): the one ceiling
    division of the engine's grid arithmetic.

    Parameters
    ----------
    size : int
        A length in pixels.
    stride : int
        A cell's side in pixels, at least 1.

    Returns
    -------
    int
        ``ceil(size / stride)``.
    """
    return -(-size // stride)


@dataclass(frozen=True)
class Window:
    """A rectangle of a raster's grid (pixels, or cells of a coarser grid), and the grid arithmetic on it."""

    xoff: int
    yoff: int
    width: int
    height: int

    @classmethod
    def whole(cls, width: int, height: int) -> Window:
        """The window of a whole ``width`` x ``height`` raster."""
        return cls(0, 0, width, height)

    @classmethod
    def of(cls, where: Window | Sequence[int]) -> Window:
        """``where`` as a Window: a Window, or (xoff, yoff, width, height)."""
        return where if isinstance(where, Window) else cls(*where)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(xoff, yoff, width, height), as GDAL's reads and writes take them."""
        return self.xoff, self.yoff, self.width, self.height

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) slices that cut this window out of an array whose origin is the grid's."""
        return slice(self.yoff, self.yoff + self.height), slice(self.xoff, self.xoff + self.width)

    def on_grid(self, stride: int) -> Window:
        """This window on the grid of ``stride`` x ``stride`` pixel cells: the cells that hold its pixels (its
        offsets are multiples of ``stride``; its last row and column of cells may be partial)."""
        return Window(self.xoff // stride, self.yoff // stride, cells(self.width, stride),
                      cells(self.height, stride))

    def within(self, outer: Window) -> Window:
        """This window with offsets relative to ``outer`` (a window that contains it)."""
        return Window(self.xoff - outer.xoff, self.yoff - outer.yoff, self.width, self.height)

    def grown(self, halo: int, raster_width: int, raster_height: int) -> Window:
        """This window grown by ``halo`` pixels on every side, clipped to the raster."""
        x0, y0 = max(0, self.xoff - halo), max(0, self.yoff - halo)
        x1 = min(raster_width, self.xoff + self.width + halo)
        y1 = min(raster_height, self.yoff + self.height + halo)
        return Window(x0, y0, x1 - x0, y1 - y0)


def plan_windows(width: int, height: int, max_pixels: float, step: int = 1, row_step: int | None = None,
                 col_step: int | None = None) -> list[Window]:
    """Cover a ``width`` x ``height`` raster with windows of at most about ``max_pixels`` pixels.

    Full-width strips when a strip of at least ``step`` rows fits (sequential reads, one window per row
    band); square tiles otherwise. Offsets are multiples of ``step``; strip heights are multiples of
    ``row_step`` (itself a multiple of ``step``) when the budget allows.

    With ``col_step`` (the input's block width, when its blocks are tiles): where a full-width strip of
    ``row_step`` rows does not fit but a tile of ``row_step`` x ``col_step`` does, windows are tiles of
    ``row_step`` rows and a multiple of ``col_step`` columns, column by column (the blocks a window's halo
    shares with the window above were read just before, and are still in GDAL's cache). Thin strips would decode
    every compressed block row many times (once per strip) and recompute their halo for a few rows each.

    Parameters
    ----------
    width, height : int
        The raster's size in pixels.
    max_pixels : float
        The most pixels a window should hold (at least ``step`` x ``step`` are always allowed).
    step : int
        The grid step (block size): window offsets are multiples of it.
    row_step : int, optional
        The input's block height: strip heights are multiples of it (and of ``step``) when the budget allows.
    col_step : int, optional
        The input's block width when its blocks are tiles.

    Returns
    -------
    list of Window
        Windows that cover the raster exactly once, in reading order (row by row; column by column for tiles of
        ``row_step`` rows).
    """
    step = max(1, int(step))
    row_step = step if not row_step else step * row_step // math.gcd(step, row_step)
    max_pixels = max(int(max_pixels), step * step)
    if col_step and width * row_step > max_pixels:
        col_step = step * col_step // math.gcd(step, col_step)
        if col_step < width and row_step * col_step <= max_pixels:
            cols = max_pixels // row_step // col_step * col_step
            return [
                Window(x, y, min(cols, width - x), min(row_step, height - y))
                for x in range(0, width, cols)
                for y in range(0, height, row_step)
            ]
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
