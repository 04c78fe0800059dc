"""Benchmark plumbing: real-content test rasters of a given size, and subprocess timing with peak RSS."""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from osgeo import gdal

gdal.UseExceptions()

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
PLUGINS = ROOT / ".build" / "plugins"  # where QGIS and qgis_process find the plugin (scripts/setup.sh)
KAMPALA = ROOT / "data" / "kampala_oam" / "kampala_oam_z21_mosaic.tif"


# Prepended to the code of a child process that runs another revision's engine (``--before``): ``engine(path)``
# imports ``map_segmenter.engine.<path>``, or the module where revisions before the engine's sub-packages
# (bfc9b22) kept it, engine/<last part>.py (segmentation.pipeline was engine/segmentation.py).
ENGINE_MODULE = """
import importlib
def engine(path):
    try:
        return importlib.import_module('map_segmenter.engine.' + path)
    except ModuleNotFoundError:
        parts = path.split('.')
        return importlib.import_module('map_segmenter.engine.' + (parts[0] if path == 'segmentation.pipeline'
                                                                   else parts[-1]))
"""


def write_mosaic_vrt(path, dataset, side, tile, described=False):
    """Write at ``path`` a VRT of ``side`` x ``side`` px on ``dataset``'s CRS and geotransform whose three Byte bands
    tile copies of ``dataset``'s pixels: the copy in row ``row``, column ``col`` is read from the file
    ``tile(row, col)`` (a file like ``dataset``), the last ones cut at the right and bottom edges.

    ``described``: each source's size, type and block size and each band's colour interpretation are written into
    the VRT, so GDAL opens a source only when it reads from it (for a mosaic of many files).
    """
    width, height = dataset.RasterXSize, dataset.RasterYSize
    block_w, block_h = dataset.GetRasterBand(1).GetBlockSize()
    sources = [(tile(row, col), col * width, row * height)
               for row in range(-(-side // height)) for col in range(-(-side // width))]
    parts = [f'<VRTDataset rasterXSize="{side}" rasterYSize="{side}">', f"<SRS>{dataset.GetProjection()}</SRS>",
             f"<GeoTransform>{', '.join(map(str, dataset.GetGeoTransform()))}</GeoTransform>"]
    for band in range(1, 4):
        if described:
            colour = gdal.GetColorInterpretationName(dataset.GetRasterBand(band).GetColorInterpretation())
            parts.append(f'<VRTRasterBand dataType="Byte" band="{band}" blockXSize="{block_w}" '
                         f'blockYSize="{block_h}"><ColorInterp>{colour}</ColorInterp>')
        else:
            parts.append(f'<VRTRasterBand dataType="Byte" band="{band}">')
        for file, x, y in sources:
            w, h = min(width, side - x), min(height, side - y)
            filename, properties = "<SourceFilename>", ""
            if described:
                filename = '<SourceFilename relativeToVRT="0">'
                properties = (f'<SourceProperties RasterXSize="{width}" RasterYSize="{height}" DataType="Byte" '
                              f'BlockXSize="{block_w}" BlockYSize="{block_h}"/>')
            parts.append(
                f"<SimpleSource>{filename}{file}</SourceFilename><SourceBand>{band}</SourceBand>{properties}"
                f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
                f'<DstRect xOff="{x}" yOff="{y}" xSize="{w}" ySize="{h}"/></SimpleSource>'
            )
        parts.append("</VRTRasterBand>")
    parts.append("</VRTDataset>")
    Path(path).write_text("\n".join(parts))


def in_child(function, *arguments):
    """Run ``function`` ("module:name" of this folder) with ``arguments`` (literals) in a child Python. Inputs are
    made so: a child's peak RSS starts at its parent's RSS when forked (Linux keeps the high-water mark across fork
    and exec), so a benchmark's own process must stay small for the peaks it reports to be its commands' own."""
    module, name = function.split(":")
    subprocess.run([sys.executable, "-c", f"from {module} import {name}; {name}(*{arguments!r})"], check=True,
                   cwd=Path(__file__).parent)  # python -c imports from its working folder


def mosaic(megapixels, source=KAMPALA, name="kampala"):
    """An uncompressed, tiled RGB GeoTIFF of about ``megapixels`` MPix made of copies of a real image.

    Copies alternate in orientation so neighbouring tiles do not repeat edge to edge. Cached in bench/out; made by
    a child process (``in_child``).
    """
    path = OUT / f"{name}_{megapixels:g}mp.tif"
    if not path.exists():
        in_child("common:write_mosaic", megapixels, str(source), name)
    return path


def write_mosaic(megapixels, source, name):
    """``mosaic``'s file, written in this process."""
    OUT.mkdir(parents=True, exist_ok=True)
    side = int(round((megapixels * 1e6) ** 0.5))
    path = OUT / f"{name}_{megapixels:g}mp.tif"
    src = gdal.Open(str(source))
    flipped = OUT / f"{name}_flipped.tif"
    if not flipped.exists():
        data = src.ReadAsArray()[:, ::-1, ::-1].copy()
        out = gdal.GetDriverByName("GTiff").CreateCopy(str(flipped), src, options=["TILED=YES"])
        for band in range(3):
            out.GetRasterBand(band + 1).WriteArray(data[band])
        out = None
    vrt_path = OUT / f"{name}_{megapixels:g}mp.vrt"
    write_mosaic_vrt(vrt_path, src, side, lambda row, col: source if (row + col) % 2 == 0 else flipped)
    gdal.Translate(str(path), str(vrt_path), creationOptions=["TILED=YES", "BIGTIFF=IF_SAFER"])


def measure(command, env=None):
    """(wall seconds, peak RSS in MB) of one run of ``command`` in a child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{command} failed: {process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def interleaved(commands, repeats, env=None, before=None):
    """Median wall seconds and largest peak RSS (MB) of each named command over ``repeats`` rounds; each round runs
    every command once, in order, so load drifts hit all alike. ``before(name)`` runs ahead of each command."""
    runs = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            if before:
                before(name)
            runs[name].append(measure(command, env))
    seconds = {name: statistics.median(wall for wall, _ in results) for name, results in runs.items()}
    peak = {name: max(rss for _, rss in results) for name, results in runs.items()}
    return seconds, peak


def median_of(command, repeats, env=None):
    runs = [measure(command, env) for _ in range(repeats)]
    return statistics.median(w for w, _ in runs), max(r for _, r in runs)


def output_options():
    """The GeoTIFF creation options the engine writes with, as gdal_translate -co arguments."""
    from map_segmenter.engine.rasters.raster_io import GTIFF_OPTIONS

    return [argument for option in GTIFF_OPTIONS for argument in ("-co", option)]


def engine_command(code):
    """A command running ``code`` in this Python (the plugin is installed in it as map_segmenter)."""
    return [sys.executable, "-c", code]


def export_engine(revision):
    """The engine of git ``revision`` as an importable map_segmenter folder (``git archive``, cached in
    bench/out/before-REV/); returns the folder to put on PYTHONPATH."""
    folder = OUT / f"before-{revision.replace('/', '_')}"
    target = folder / "map_segmenter"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return folder
