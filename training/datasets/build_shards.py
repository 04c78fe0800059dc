"""Cut rasters into tiles with precomputed SLIC superpixels: shard folders plus one index.jsonl.

    python -m training.datasets.build_shards [--out training/shards/default] [--tile 256] [--rasters A B ...]
        [--holdout tile6,tile8] [--val-fraction 0.05] [--slic-cell 12] [--per-shard 256] [--limit N]

Every raster is covered by tile x tile px windows spread evenly (the last ones overlap rather than leave an
edge out); windows with under 95 % valid pixels are skipped. Each tile is written as a GeoTIFF (keeping the
raster's georeferencing) beside its SLIC labels (``.slic.npy``, uint16, same height and width). Splits are
deterministic: Dubai tiles named in --holdout go to "holdout", the others to "val" when a hash of the
source file's name falls below --val-fraction (whole files, so no window of a val image leaks into train),
else to "train". The same inputs and flags give byte-identical outputs.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from osgeo import gdal

from .. import ROOT
from ..config import HOLDOUT_TILES
from .rasters import Raster, default_rasters, dubai_tile, stable_fraction
from .targets import slic_labels

INDEX = "index.jsonl"


def window_origins(length, tile):
    """Evenly spread origins of ``tile``-long windows covering 0..length (none when length < tile)."""
    if length < tile:
        return []
    count = -(-length // tile)
    return sorted({int(round(v)) for v in np.linspace(0, length - tile, count)})


def split_of(path, holdout, val_fraction):
    if dubai_tile(path) in holdout:
        return "holdout"
    return "val" if stable_fraction(Path(path).name) < val_fraction else "train"


def write_tile(path, pixels, raster, x, y):
    driver = gdal.GetDriverByName("GTiff")
    dataset = driver.Create(str(path), pixels.shape[2], pixels.shape[1], 3, gdal.GDT_Byte,
                            ["COMPRESS=DEFLATE", "PREDICTOR=2"])
    geotransform = raster.dataset.GetGeoTransform(can_return_null=True)
    if geotransform is not None:
        gt = list(geotransform)
        gt[0], gt[3] = gt[0] + x * gt[1] + y * gt[2], gt[3] + x * gt[4] + y * gt[5]
        dataset.SetGeoTransform(gt)
        projection = raster.dataset.GetProjection()
        if projection:
            dataset.SetProjection(projection)
    for index in range(3):
        dataset.GetRasterBand(index + 1).WriteArray(pixels[index])
    dataset = None


def build(out, rasters=None, tile=256, holdout=HOLDOUT_TILES, val_fraction=0.05, slic_cell=12, per_shard=256,
          limit=0, log=print):
    """Write the shards and index.jsonl under ``out``; returns the index entries."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rasters = [Path(p) for p in (rasters or default_rasters(holdout=()))]
    entries = []
    for path in rasters:
        raster = Raster(path)
        split = split_of(path, holdout, val_fraction)
        for y in window_origins(raster.height, tile):
            for x in window_origins(raster.width, tile):
                pixels, valid = raster.read(x, y, tile, tile)
                if valid.mean() < 0.95:
                    continue
                number = len(entries)
                shard = out / f"shard-{number // per_shard:05d}"
                shard.mkdir(exist_ok=True)
                stem = f"{number:06d}_{path.stem}_{x}_{y}"
                write_tile(shard / f"{stem}.tif", pixels, raster, x, y)
                np.save(shard / f"{stem}.slic.npy", slic_labels(pixels, slic_cell))
                entries.append(dict(id=stem, tile=f"{shard.name}/{stem}.tif", slic=f"{shard.name}/{stem}.slic.npy",
                                    source=path.name, x=x, y=y, size=tile, split=split))
                if limit and len(entries) >= limit:
                    break
            if limit and len(entries) >= limit:
                break
        log(f"{path.name}: {split}, {sum(e['source'] == path.name for e in entries)} tiles")
        if limit and len(entries) >= limit:
            break
    with open(out / INDEX, "w") as handle:
        for entry in entries:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
    counts = {s: sum(e["split"] == s for e in entries) for s in ("train", "val", "holdout")}
    log(f"wrote {len(entries)} tiles of {tile} px to {out} ({counts})")
    return entries


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "training" / "shards" / "default", help="output folder")
    parser.add_argument("--tile", type=int, default=256, help="tile side in px (a multiple of 4)")
    parser.add_argument("--rasters", nargs="*", help="rasters to cut (default: all bundled imagery)")
    parser.add_argument("--holdout", default=",".join(HOLDOUT_TILES), help="Dubai tiles for the holdout split")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="fraction of source files for val")
    parser.add_argument("--slic-cell", type=int, default=12, help="mean superpixel side in px")
    parser.add_argument("--per-shard", type=int, default=256, help="tiles per shard folder")
    parser.add_argument("--limit", type=int, default=0, help="stop after N tiles (0 = all)")
    args = parser.parse_args(argv)
    if args.tile % 4:
        parser.error("--tile must be a multiple of 4 (the model's stride)")
    holdout = tuple(t for t in args.holdout.split(",") if t)
    build(args.out, args.rasters, args.tile, holdout, args.val_fraction, args.slic_cell, args.per_shard, args.limit)


if __name__ == "__main__":
    main()
