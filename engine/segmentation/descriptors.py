"""Block descriptors for K-Means: colour and texture of each r x r block, computed exactly.

Per block (and its ``context`` ring of neighbouring blocks) we take integer sums of values, squared values
and valid-pixel counts. Integer sums are exact, so a block's descriptor does not depend on how the raster
was cut into windows. From them: the mean colour, converted to CIELAB for 3-band input, and the standard
deviation of each band as texture (measured on the Dubai tiles: see bench/README.md).
"""

import numpy as np

from ..rasters.windows import cells

TEXTURE_WEIGHT = 1.0
# Inputs are integers in units of 1/QUANT of the 0..255 range (8-bit data are used as they are).
QUANT = 16
_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def feature_names(band_count):
    if band_count == 3:
        return ["L", "a", "b", "std_r", "std_g", "std_b"]
    return [f"mean_{i + 1}" for i in range(band_count)] + [f"std_{i + 1}" for i in range(band_count)]


def _block_total(plane, block, rows, cols, maximum):
    """Sum of each block of a (rows*block, cols*block) plane of values <= ``maximum``: strided adds of rows,
    then of columns (several times faster than a reshape-sum over small axes)."""
    wide = np.uint32 if block * block * maximum < 2**32 else np.int64
    total = plane[0::block].astype(wide)
    for offset in range(1, block):
        np.add(total, plane[offset::block], out=total, casting="unsafe")  # values are non-negative
    out = total[:, 0::block].copy()
    for offset in range(1, block):
        out += total[:, offset::block]
    return out.astype(np.int64)


def block_sums(values, valid, block):
    """Integer sums over r x r blocks: (sum, sum of squares) per band and valid count.

    ``values``: integer array (bands, h, w) with values <= 255 * QUANT; ``valid``: bool (h, w) or None. Partial
    blocks at the right and bottom edges are summed over the pixels they have: only those edge strips are padded
    (a padded copy of the whole window cost memory and time on every raster whose size is not a multiple of r).
    """
    bands, height, width = values.shape
    full_h, full_w = height // block * block, width // block * block
    if full_h == height and full_w == width:
        return _whole_block_sums(values, valid, block)
    rows, cols = cells(height, block), cells(width, block)
    sums = np.zeros((bands, rows, cols), np.int64)
    squares = np.zeros((bands, rows, cols), np.int64)
    counts = np.zeros((rows, cols), np.int64)
    # whole blocks, the right edge (with the corner), the bottom edge
    parts = [(0, full_h, 0, full_w), (0, height, full_w, width), (full_h, height, 0, full_w)]
    for y0, y1, x0, x1 in parts:
        if y1 == y0 or x1 == x0:
            continue
        part = values[:, y0:y1, x0:x1]
        part_valid = None if valid is None else valid[y0:y1, x0:x1]
        pad_h, pad_w = -(y1 - y0) % block, -(x1 - x0) % block
        if pad_h or pad_w:
            if part_valid is None:
                part_valid = np.ones(part.shape[1:], bool)
            part = np.pad(part, ((0, 0), (0, pad_h), (0, pad_w)))
            part_valid = np.pad(part_valid, ((0, pad_h), (0, pad_w)))
        part_sums, part_squares, part_counts = _whole_block_sums(part, part_valid, block)
        r0, c0 = y0 // block, x0 // block
        r1, c1 = r0 + part_counts.shape[0], c0 + part_counts.shape[1]
        sums[:, r0:r1, c0:c1], squares[:, r0:r1, c0:c1], counts[r0:r1, c0:c1] = part_sums, part_squares, part_counts
    return sums, squares, counts


def _whole_block_sums(values, valid, block):
    """``block_sums`` of an array whose height and width are multiples of ``block``."""
    bands, height, width = values.shape
    rows, cols = height // block, width // block
    small = values.dtype == np.uint8
    top = 255 if small else 255 * QUANT
    sums = np.empty((bands, rows, cols), np.int64)
    squares = np.empty((bands, rows, cols), np.int64)
    for index in range(bands):
        band = values[index]
        if valid is not None:
            band = band * valid
        sums[index] = _block_total(band, block, rows, cols, top)
        # 8-bit squares fit uint16; squares of values <= 255 * QUANT fit int32.
        band = band.astype(np.uint16 if small else np.int32)
        band *= band
        squares[index] = _block_total(band, block, rows, cols, top * top)
    if valid is None:
        counts = np.full((rows, cols), block * block, np.int64)
    else:
        counts = _block_total(valid.view(np.uint8), block, rows, cols, 1)
    return sums, squares, counts


def ring_sum(grid, context):
    """Sum of each cell and its ``context`` ring of neighbours (missing neighbours count as zero).

    Separable (rows, then columns) on integers, so exact."""
    if context == 0:
        return grid
    *lead, rows, cols = grid.shape
    padded = np.zeros((*lead, rows + 2 * context, cols + 2 * context), grid.dtype)
    padded[..., context : context + rows, context : context + cols] = grid
    across = padded[..., :, 0:cols].copy()
    for dx in range(1, 2 * context + 1):
        across += padded[..., :, dx : dx + cols]
    total = across[..., 0:rows, :].copy()
    for dy in range(1, 2 * context + 1):
        total += across[..., dy : dy + rows, :]
    return total


def srgb_to_lab(rgb):
    """CIELAB (D65) of sRGB values in 0..1, channels first."""
    linear = np.where(rgb > 0.04045, ((rgb + np.float32(0.055)) / np.float32(1.055)) ** np.float32(2.4), rgb / 12.92)
    linear = linear.astype(rgb.dtype)
    # Written out per element rather than as a matrix product: BLAS may round a pixel differently
    # depending on where it sits in the array, and tiled runs must equal untiled runs bit for bit.
    m = _SRGB_TO_XYZ
    m = (m / _WHITE_D65[:, None]).astype(rgb.dtype)
    xyz = np.stack([m[i, 0] * linear[0] + m[i, 1] * linear[1] + m[i, 2] * linear[2] for i in range(3)])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def block_descriptors(values, valid, block, context=1, quant=1, texture_weight=TEXTURE_WEIGHT):
    """Descriptors (rows, cols, C) float32 and block validity (rows, cols) for one window.

    ``values`` holds the window grown by ``context`` blocks where the raster has them; the caller crops
    the halo blocks away. A block is valid when it has at least one valid pixel of its own.
    """
    # Each large temporary is released as soon as it is used and the float64 steps run in place (the same
    # operations in the same order, so the same values): a window's working memory on a worker stays small
    # while other windows are in flight (issue 10: peak RSS that does not grow with the raster).
    sums, squares, counts = block_sums(values, valid, block)
    block_valid = counts > 0
    sums = ring_sum(sums, context)
    squares = ring_sum(squares, context)
    safe = np.maximum(ring_sum(counts, context), 1).astype(np.float64)
    del counts
    mean = sums / safe
    del sums
    mean /= quant
    variance = squares / safe
    del squares, safe
    variance /= quant * quant
    variance -= mean * mean
    std = np.maximum(variance, 0.0, out=variance)
    del variance
    np.sqrt(std, out=std)
    std *= 100.0 / 255.0
    std *= texture_weight
    bands = values.shape[0]
    if bands == 3:
        mean /= 255.0
        rgb = mean.astype(np.float32)
        del mean
        colour = srgb_to_lab(rgb)
        del rgb
    else:
        mean *= 100.0 / 255.0
        colour = mean
        del mean
    features = np.empty((len(colour) + len(std), *block_valid.shape), np.float32)
    features[: len(colour)] = colour
    del colour
    features[-len(std) :] = std
    del std
    features[:, ~block_valid] = np.nan
    return np.moveaxis(features, 0, -1), block_valid
