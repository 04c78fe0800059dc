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


def mosaic(megapixels, source=KAMPALA, name="kampala"):
    """An uncompressed, tiled RGB GeoTIFF of about ``megapixels`` MPix made of copies of a real image.

    Copies alternate in orientation so neighbouring tiles do not repeat edge to edge. Cached in bench/out.
    """
    OUT.mkdir(parents=True, exist_ok=True)
    side = int(round((megapixels * 1e6) ** 0.5))
    path = OUT / f"{name}_{megapixels:g}mp.tif"
    if path.exists():
        return path
    src = gdal.Open(str(source))
    width, height = src.RasterXSize, src.RasterYSize
    flipped = OUT / f"{name}_flipped.tif"
    if not flipped.exists():
        data = src.ReadAsArray()[:, ::-1, ::-1].copy()
        out = gdal.GetDriverByName("GTiff").CreateCopy(str(flipped), src, options=["TILED=YES"])
        for band in range(3):
            out.GetRasterBand(band + 1).WriteArray(data[band])
        out = None
    sources = []
    for row in range(-(-side // height)):
        for col in range(-(-side // width)):
            tile = str(source if (row + col) % 2 == 0 else flipped)
            sources.append((tile, col * width, row * height))
    vrt_path = OUT / f"{name}_{megapixels:g}mp.vrt"
    gt = src.GetGeoTransform()
    parts = [f'<VRTDataset rasterXSize="{side}" rasterYSize="{side}">',
             f"<SRS>{src.GetProjection()}</SRS>", f"<GeoTransform>{', '.join(map(str, gt))}</GeoTransform>"]
    for band in range(1, 4):
        parts.append(f'<VRTRasterBand dataType="Byte" band="{band}">')
        for tile, x, y in sources:
            w, h = min(width, side - x), min(height, side - y)
            parts.append(
                f"<SimpleSource><SourceFilename>{tile}</SourceFilename><SourceBand>{band}</SourceBand>"
                f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/><DstRect xOff="{x}" yOff="{y}" '
                f'xSize="{w}" ySize="{h}"/></SimpleSource>'
            )
        parts.append("</VRTRasterBand>")
    parts.append("</VRTDataset>")
    vrt_path.write_text("\n".join(parts))
    gdal.Translate(str(path), str(vrt_path), creationOptions=["TILED=YES", "BIGTIFF=IF_SAFER"])
    return path


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
    from map_segmenter.engine.raster_io import GTIFF_OPTIONS

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
