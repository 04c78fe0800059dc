"""Memory follows MEMORY_MB, not the raster: GDAL's block cache is capped during a run (and restored), windows
follow the input's blocks when the cache cannot hold two block rows, a VRT keeps at most MEMORY_MB / 8 of its
sources open, and results do not change."""

import os
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal

from map_segmenter.engine.rasters.windows import plan_windows
from map_segmenter.engine.runtime import memory
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation.descriptors import _whole_block_sums, block_sums
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.blur import blur_labels

from helpers import read_array

MB = 2**20


def cache_during(run):
    seen = []
    run(Progress(report=lambda fraction, message: seen.append(gdal.GetCacheMax())))
    return set(seen)


def test_gdal_cache_is_capped_during_a_run_and_restored(tmp_path, kampala_crop):
    before = gdal.GetCacheMax()
    try:
        gdal.SetCacheMax(512 * MB)
        out = str(tmp_path / "labels.tif")
        assert cache_during(lambda p: segment_kmeans(kampala_crop, out, memory_mb=64, progress=p)) == {16 * MB}
        assert gdal.GetCacheMax() == 512 * MB
        assert cache_during(lambda p: blur_labels(out, str(tmp_path / "b.tif"), memory_mb=8, progress=p)) == {4 * MB}
        assert gdal.GetCacheMax() == 512 * MB
        gdal.SetCacheMax(8 * MB)  # never above GDAL's own setting
        assert cache_during(lambda p: segment_kmeans(kampala_crop, out, memory_mb=256, progress=p)) == {8 * MB}
        assert gdal.GetCacheMax() == 8 * MB
        try:  # restored when the run fails
            segment_kmeans(kampala_crop, out, segments=300, memory_mb=256)
        except Exception:
            pass
        assert gdal.GetCacheMax() == 8 * MB
    finally:
        gdal.SetCacheMax(before)


def test_overlapping_runs_share_the_largest_cap_and_the_last_restores():
    before = gdal.GetCacheMax()
    try:
        gdal.SetCacheMax(300 * MB)
        with memory.block_cache(64):
            assert gdal.GetCacheMax() == 16 * MB
            with memory.block_cache(256):
                assert gdal.GetCacheMax() == 64 * MB
                with memory.block_cache("not a number"):
                    assert gdal.GetCacheMax() == 64 * MB
            assert gdal.GetCacheMax() == 16 * MB
        assert gdal.GetCacheMax() == 300 * MB
    finally:
        gdal.SetCacheMax(before)


def test_tiles_of_whole_input_blocks_when_a_strip_of_one_block_row_does_not_fit():
    windows = plan_windows(1000, 700, max_pixels=64 * 300, step=4, row_step=64, col_step=64)
    assert windows[0].width == 256 and windows[0].height == 64  # 4 blocks of 64 x 64 px
    assert all(w.xoff % 64 == 0 and w.yoff % 64 == 0 for w in windows)
    assert sum(w.width * w.height for w in windows) == 1000 * 700
    assert len({(w.xoff, w.yoff) for w in windows}) == len(windows) == 4 * 11
    # column by column: the blocks above and below a window were read just before, and are still in the cache
    assert [(w.xoff, w.yoff) for w in windows[:3]] == [(0, 0), (0, 64), (0, 128)]
    # strips of whole block rows when they fit, as before
    strips = plan_windows(1000, 700, max_pixels=1000 * 130, step=4, row_step=64, col_step=64)
    assert {w.width for w in strips} == {1000} and strips[1].yoff == 128


def test_a_small_cache_gives_block_aligned_windows_and_the_same_labels(tmp_path, kampala_crop):
    source = str(tmp_path / "tiled.tif")
    gdal.Translate(source, kampala_crop, creationOptions=["TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64",
                                                          "COMPRESS=DEFLATE"])
    whole = segment_kmeans(source, str(tmp_path / "whole.tif"), segments=6, memory_mb=64)
    assert whole.windows == 1
    before = gdal.GetCacheMax()
    try:
        gdal.SetCacheMax(64 * 1024)  # two rows of 64 px blocks (2 x 517 x 64 x 3 bytes) do not fit
        tiled = segment_kmeans(source, str(tmp_path / "tiled_labels.tif"), segments=6, memory_mb=0.4)
    finally:
        gdal.SetCacheMax(before)
    # the windows' 3/4 of 0.4 MB / 72 bytes per pixel: 4369 px, tiles of 64 x 64; 517 x 389 px -> 9 x 7 tiles
    assert tiled.windows == 9 * 7
    assert np.array_equal(read_array(tmp_path / "tiled_labels.tif"), read_array(tmp_path / "whole.tif"))


def test_block_sums_pad_only_the_edges_and_equal_a_padded_copy():
    rng = np.random.default_rng(2)
    for block, height, width in ((4, 37, 51), (5, 10, 23), (3, 2, 2), (4, 16, 31)):
        values = rng.integers(0, 256, (3, height, width)).astype(np.uint8)
        for valid in (None, rng.random((height, width)) > 0.2):
            pad = ((0, 0), (0, -height % block), (0, -width % block))
            mask = np.ones((height, width), bool) if valid is None else valid
            expected = _whole_block_sums(np.pad(values, pad), np.pad(mask, pad[1:]), block)
            for got, want in zip(block_sums(values, valid, block), expected):
                assert np.array_equal(got, want) and got.dtype == want.dtype


def test_freed_memory_is_given_back_on_glibc():
    import platform

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert memory._trim is not None
    memory._last_trim[0] = 0.0
    memory.release_freed()  # callable anywhere; a no-op without glibc


def test_pool_of_open_vrt_sources_follows_memory_mb(monkeypatch):
    monkeypatch.delenv(memory.POOL_VARIABLE, raising=False)
    own = gdal.GetConfigOption(memory.POOL_VARIABLE)
    try:
        gdal.SetConfigOption(memory.POOL_VARIABLE, None)
        assert [memory.pool_size(mb) for mb in (256, 32, 8, 2048)] == [32, 8, 8, 100]
        gdal.SetConfigOption(memory.POOL_VARIABLE, "16")  # never above GDAL's own setting
        assert memory.pool_size(256) == 16
        with memory.dataset_pool(256):
            assert gdal.GetConfigOption(memory.POOL_VARIABLE) == "16"
            with memory.dataset_pool(64):
                assert gdal.GetConfigOption(memory.POOL_VARIABLE) == "8"
            assert gdal.GetConfigOption(memory.POOL_VARIABLE) == "16"
        assert gdal.GetThreadLocalConfigOption(memory.POOL_VARIABLE) is None
    finally:
        gdal.SetConfigOption(memory.POOL_VARIABLE, own)


OPEN_SOURCES = """
import os, sys
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.runtime.progress import Progress
vrt, out, tiles = sys.argv[1:4]
def link(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # the listing's own descriptor, closed by now
        return ""
def open_sources(fraction, message):
    counts.append(sum(link(fd).startswith(tiles) for fd in os.listdir("/proc/self/fd")))
counts = []
segment_kmeans(vrt, out, segments=4, memory_mb=64, progress=Progress(report=open_sources))
print(max(counts))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_a_vrt_of_many_sources_keeps_at_most_the_pool_open(tmp_path, kampala_crop):
    """A VRT mosaic of 48 files (each its own hard link of one GeoTIFF, as bench_memory.py's) read in one window:
    GDAL's default pool kept all 48 open (about 0.5 MB each for JPEG tiles); MEMORY_MB 64 allows 8. In a child
    process: the pool is GDAL's, shared with any VRT this one has open."""
    tile = tmp_path / "tile.tif"
    gdal.Translate(str(tile), kampala_crop, srcWin=[0, 0, 64, 48], creationOptions=["COMPRESS=JPEG"])
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    links = []
    for index in range(48):
        links.append(str(tiles / f"tile_{index:02d}.tif"))
        os.link(tile, links[-1])
    vrt = tmp_path / "tiled.vrt"
    vrt.write_text(_mosaic_xml(links, 8, 6, 64, 48))
    environment = {key: value for key, value in os.environ.items() if key != memory.POOL_VARIABLE}
    result = subprocess.run([sys.executable, "-c", OPEN_SOURCES, str(vrt), str(tmp_path / "labels.tif"),
                             str(tiles)], capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 1 <= int(result.stdout.split()[-1]) <= memory.pool_size(64) == 8


def _mosaic_xml(links, columns, rows, width, height):
    bands = []
    for band in (1, 2, 3):
        sources = "".join(
            f"<SimpleSource><SourceFilename>{links[row * columns + column]}</SourceFilename>"
            f"<SourceBand>{band}</SourceBand><SrcRect xOff='0' yOff='0' xSize='{width}' ySize='{height}'/>"
            f"<DstRect xOff='{column * width}' yOff='{row * height}' xSize='{width}' ySize='{height}'/>"
            f"</SimpleSource>"
            for row in range(rows) for column in range(columns))
        bands.append(f"<VRTRasterBand dataType='Byte' band='{band}'>{sources}</VRTRasterBand>")
    return (f"<VRTDataset rasterXSize='{columns * width}' rasterYSize='{rows * height}'>"
            f"{''.join(bands)}</VRTDataset>")
