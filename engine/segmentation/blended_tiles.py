"""Inference for models without a finite receptive field (``global_context``: ViTs with global attention, CNNs
with squeeze-and-excitation, which pools over the whole input).

No halo makes such tiles exact: every embedding depends on the whole tile. The tiles of ``plan_tiles`` still
have cores that tile the raster and ``halo`` px (the model's ``receptive_field``: its overlap) of context on
each side, but every cell of a tile, halo included, is kept and weighted by a ramp that falls linearly from 1,
``halo`` px inside the core's edge, to 0 at the tile's edge; each cell's embedding is the weighted mean over the
tiles that cover it. Across a core boundary the two tiles' weights add up to 1, so embeddings change smoothly
from one tile to the next instead of jumping at a seam; far from tile edges a cell is its own tile's embedding.

Results depend on the tile size (and on nothing else the run is given: batch size, threads and memory only
change how the same tiles are run). Tiles are accumulated one row of tiles at a time: a row of cores is final
once the next row of tiles is done, so memory holds two rows of tiles' embeddings.
"""

import numpy as np

from ..rasters.windows import Window, cells
from ..runtime import params
from ..runtime.errors import InputError
from ..runtime.pipeline import ordered_map
from .pipeline import embedding_cells


def ramp(cells, halo_cells):
    """Weights (cells,) along one side of a tile: 1 in the middle, falling linearly over the outer
    2 x ``halo_cells`` cells to 1 / (4 x halo_cells) at the edge, so two tiles overlapping by 2 x halo_cells
    cells have weights that add up to 1."""
    if halo_cells == 0:
        return np.ones(cells, np.float64)
    index = np.arange(cells, dtype=np.float64)
    span = 2.0 * halo_cells
    return np.clip(np.minimum(index + 0.5, cells - index - 0.5) / span, 0.0, 1.0)


def tile_weights(layout, stride):
    rows = ramp(layout.height // stride, layout.halo // stride)
    cols = ramp(layout.width // stride, layout.halo // stride)
    return np.outer(rows, cols).astype(np.float32)


def notes(info, layout):
    """What the user is told about a global-context model's tiling."""
    return (f"{info.name} has global context (attention or pooling over the whole tile, no finite receptive "
            f"field): tiles of "
            f"{layout.width} x {layout.height} px overlap by {layout.halo} px on each side and their embeddings "
            f"are blended, so results depend on {params.TILE_SIZE} (0 = the model's {info.tile_size} px). Keep "
            f"{params.TILE_SIZE} fixed to compare runs.")


def check_layout(layout, tile_size):
    if layout.core_height < layout.halo or layout.core_width < layout.halo:
        raise InputError(
            f"{params.TILE_SIZE} {tile_size} px leaves cores ({layout.core_width} x {layout.core_height} px) smaller "
            f"than the model's blending overlap of {layout.halo} px: choose a {params.TILE_SIZE} of at least "
            f"{3 * layout.halo} px.")


def describe_blended(model, reader, layout, chunks, grid, check, workers):
    """``FeatureExtractor.describe`` for global-context models: ``(chunk, [Cells])`` in the order of ``chunks``,
    the ``Cells`` being the rows of cores whose blending is complete (a chunk may complete none; the last one
    also carries the rows still held)."""
    stride = reader.stride
    grid_w, grid_h = grid.width, grid.height
    halo_cells = layout.halo // stride
    core_rows, core_cols = layout.core_height // stride, layout.core_width // stride
    tile_rows, tile_cols = layout.height // stride, layout.width // stride
    weights = tile_weights(layout, stride)
    row_origins = sorted({y for _, y in layout.origins})
    columns = cells(grid_w, core_cols) * core_cols + 2 * halo_cells
    band_rows = 2 * core_rows + 2 * halo_cells  # cells [top - halo, top + 2 core + halo) of two rows of tiles
    total = np.zeros((model.info.embed_dim, band_rows, columns), np.float32)
    weight = np.zeros((band_rows, columns), np.float32)
    validity = {}  # tile row y -> (valid (core_rows, columns), brightness)

    def read(chunk):
        return chunk, [reader.read(x, y) for x, y in chunk]

    def compute(chunk, tiles):
        batch = np.empty((len(chunk), 3, layout.height, layout.width), np.float32)
        prepared = [reader.prepare(x, y, *tile, out=batch[i]) for i, ((x, y), tile) in enumerate(zip(chunk, tiles))]
        del tiles
        output = model.run(batch, cancel_check=check)
        if output.shape[2:] != (tile_rows, tile_cols):
            raise InputError(f"the model returned {output.shape[2]} x {output.shape[3]} cells for a "
                             f"{layout.height} x {layout.width} px tile; stride {stride} needs {tile_rows} x "
                             f"{tile_cols}")
        return [(x, y, embedding * weights, valid, brightness)
                for (x, y), (_, valid, brightness), embedding in zip(chunk, prepared, output)]

    def emit(top):
        """The ``Cells`` of the row of cores starting at cell row ``top`` (held from band row ``first``)."""
        rows = min(core_rows, grid_h - top)
        if rows <= 0:
            return []
        first = top - band_top + halo_cells
        sums = total[:, first : first + rows, halo_cells : halo_cells + grid_w]
        counts = weight[first : first + rows, halo_cells : halo_cells + grid_w]
        valid, brightness = validity.pop(top * stride)
        valid, brightness = valid[:rows, :grid_w], brightness[:rows, :grid_w]
        with np.errstate(invalid="ignore", divide="ignore"):
            core = sums / counts
        return [embedding_cells(Window(0, top, grid_w, rows), core, valid, brightness, grid_w)]

    def shift():
        """Drop the emitted row of cores: the band then starts one row of cores lower."""
        total[:, :-core_rows] = total[:, core_rows:]
        total[:, -core_rows:] = 0.0
        weight[:-core_rows] = weight[core_rows:]
        weight[-core_rows:] = 0.0

    band_top = 0  # cell row of band row ``halo_cells``: the first row of cores the band holds
    held = None  # the previous chunk and its Cells: the last chunk also carries the rows emitted at the end
    for chunk, tiles in ordered_map(read, compute, chunks, workers):
        emitted = []
        for x, y, weighted, valid, brightness in tiles:
            row = y // stride
            if row >= band_top + 2 * core_rows:  # a third row of tiles: the first one's cores are final
                emitted += emit(band_top)
                shift()
                band_top += core_rows
            r0, c0 = row - band_top, x // stride  # band row of the tile's first cell (its halo's top)
            total[:, r0 : r0 + tile_rows, c0 : c0 + tile_cols] += weighted
            weight[r0 : r0 + tile_rows, c0 : c0 + tile_cols] += weights
            valid_row, bright_row = validity.setdefault(
                y, (np.zeros((core_rows, columns), bool), np.zeros((core_rows, columns), np.float32)))
            valid_row[:, c0 : c0 + core_cols] = valid
            bright_row[:, c0 : c0 + core_cols] = brightness
        if any(x + layout.core_width >= grid_w * stride for x, _, _, _, _ in tiles):
            reader.raster.release_cache()
        if held is not None:
            yield held
        held = (chunk, emitted)
    for top in (band_top, band_top + core_rows):
        if top * stride in row_origins:
            held[1].extend(emit(top))
    if held is not None:
        yield held
