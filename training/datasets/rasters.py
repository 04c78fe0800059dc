"""Real rasters GDAL reads (GeoTIFF, JPEG, PNG, ...): the training imagery and random windows of it."""

import hashlib
from pathlib import Path

import numpy as np
from osgeo import gdal

from .. import ROOT
from ..config import HOLDOUT_TILES

DATA = ROOT / "data"
GEOREF = [
    DATA / "kampala_oam" / "kampala_oam_z21_mosaic.tif",
    DATA / "georef" / "swissimage_zurich_detectree_1091-322_00.tif",
    DATA / "georef" / "naip_m_4709963_se_14_1_20190904_5m_RGBN.tif",
]
DUBAI_IMAGES = DATA / "dubai_hitl" / "images"

gdal.UseExceptions()


def dubai_tile(path):
    """'tile6' for .../tile6_part003.jpg; None for other files."""
    stem = Path(path).stem
    return stem.split("_")[0] if stem.startswith("tile") and "_part" in stem else None


def default_rasters(holdout=HOLDOUT_TILES):
    """The bundled imagery for training: the georeferenced rasters and the Dubai images not held out."""
    dubai = [p for p in sorted(DUBAI_IMAGES.glob("*.jpg")) if dubai_tile(p) not in set(holdout)]
    return [p for p in GEOREF if p.exists()] + dubai


def heldout_pairs(holdout=HOLDOUT_TILES, invert=False):
    """(image, mask) pairs of the held-out Dubai tiles (with ``invert``: of the tiles trained on)."""
    masks = DATA / "dubai_hitl" / "masks"
    return [(p, masks / (p.stem + ".png")) for p in sorted(DUBAI_IMAGES.glob("*.jpg"))
            if (dubai_tile(p) in holdout) != invert]


def stable_fraction(text):
    """A number in [0, 1) fixed by ``text`` (deterministic across runs and machines, unlike hash())."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / 16**12


class Raster:
    """An open raster: its first three bands (or ``bands``) read as uint8 windows with a validity mask."""

    def __init__(self, path, bands=(1, 2, 3)):
        self.path = str(path)
        self.dataset = gdal.Open(self.path)
        if self.dataset.RasterCount < 3:
            raise ValueError(f"{path}: training needs 3 bands, it has {self.dataset.RasterCount}")
        self.bands = list(bands)
        self.width, self.height = self.dataset.RasterXSize, self.dataset.RasterYSize
        first = self.dataset.GetRasterBand(self.bands[0])
        self.nodata = first.GetNoDataValue()
        self.byte = first.DataType == gdal.GDT_Byte
        self.scale = None
        if not self.byte:  # robust 2-98 % stretch to 0..255, fixed per raster
            sample = self.dataset.ReadAsArray(band_list=self.bands, buf_xsize=min(self.width, 512),
                                              buf_ysize=min(self.height, 512)).astype(np.float64)
            lo, hi = np.percentile(sample.reshape(3, -1), [2, 98], axis=1)
            self.scale = (lo[:, None, None], 255.0 / np.maximum(hi - lo, 1e-9)[:, None, None])

    def read(self, x, y, w, h):
        """(uint8 (3, h, w), bool valid (h, w))."""
        pixels = self.dataset.ReadAsArray(x, y, w, h, band_list=self.bands)
        valid = np.ones((h, w), bool)
        if self.nodata is not None:
            valid &= ~np.all(pixels == self.nodata, axis=0)
        if self.scale is not None:
            lo, factor = self.scale
            pixels = np.clip(np.rint((pixels - lo) * factor), 0, 255)
        return pixels.astype(np.uint8), valid


class RandomWindows:
    """Random windows (several patch sizes) of real rasters, drawn with probability proportional to area."""

    def __init__(self, paths, min_valid=0.95):
        self.rasters = [Raster(p) for p in paths]
        areas = np.array([r.width * r.height for r in self.rasters], np.float64)
        self.weights = areas / areas.sum()
        self.min_valid = min_valid

    def sample(self, rng, size):
        """(uint8 (3, size, size), name) of a window of ``size`` px with almost only valid pixels."""
        for _ in range(50):
            raster = self.rasters[rng.choice(len(self.rasters), p=self.weights)]
            if raster.width < size or raster.height < size:
                continue
            x = int(rng.integers(0, raster.width - size + 1))
            y = int(rng.integers(0, raster.height - size + 1))
            pixels, valid = raster.read(x, y, size, size)
            if valid.mean() >= self.min_valid:
                return pixels, f"{Path(raster.path).name}:{x},{y}"
        raise RuntimeError(f"no valid {size} px window found in 50 draws; are the rasters smaller than {size} px?")
