"""One Ctrl+C (SIGINT) stops a qgis_process run within a second and leaves nothing at the destination.

qgis_process cancels the feedback from a Qt socket notifier, which it served only when its progress bar moved and
2 s had passed (never with --json, where a Ctrl+C was ignored and the run went on to write its output)."""

import os
import signal
import subprocess
import time

import pytest
from osgeo import gdal

from helpers import KAMPALA, PLUGINS, QGIS_PROCESS, ROOT, qgis_process


def mosaic(folder, copies=(5, 8)):
    """A VRT of ``copies`` (columns, rows) of the Kampala orthophoto, each through its own link: 150 MPix of
    JPEG tiles, several seconds of kmeans, and no large file written."""
    source = gdal.Open(str(KAMPALA))
    width, height = source.RasterXSize, source.RasterYSize
    columns, rows = copies
    parts = [f'<VRTDataset rasterXSize="{width * columns}" rasterYSize="{height * rows}">',
             f"<SRS>{source.GetProjection()}</SRS>",
             f"<GeoTransform>{', '.join(map(str, source.GetGeoTransform()))}</GeoTransform>"]
    for band in (1, 2, 3):
        parts.append(f'<VRTRasterBand dataType="Byte" band="{band}" blockXSize="256" blockYSize="256">')
        for row in range(rows):
            for column in range(columns):
                link = folder / f"tile_{row}_{column}.tif"
                if not link.exists():
                    link.symlink_to(KAMPALA)
                parts.append(f"<SimpleSource><SourceFilename>{link}</SourceFilename><SourceBand>{band}</SourceBand>"
                             f'<SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>'
                             f'<DstRect xOff="{column * width}" yOff="{row * height}" xSize="{width}" '
                             f'ySize="{height}"/></SimpleSource>')
        parts.append("</VRTRasterBand>")
    parts.append("</VRTDataset>")
    path = folder / "mosaic.vrt"
    path.write_text("\n".join(parts))
    return path


def engine_scratch(folder):
    return [name for name in os.listdir(folder) if name.startswith("segmenter-")]


@pytest.mark.parametrize("json", [False, True])
def test_one_ctrl_c_stops_kmeans_within_a_second_and_leaves_nothing(tmp_path, json):
    qgis_process("list")  # enables the plugin in the test profile
    (tmp_path / "tiles").mkdir()
    (tmp_path / "scratch").mkdir()
    (tmp_path / "out").mkdir()
    source = mosaic(tmp_path / "tiles")
    out = tmp_path / "out" / "labels.tif"
    env = dict(os.environ, QGIS_PLUGINPATH=str(PLUGINS), QT_QPA_PLATFORM="offscreen",
               QGIS_CUSTOM_CONFIG_PATH=str(ROOT / ".build" / "qgis-profile"), TMPDIR=str(tmp_path / "scratch"))
    command = [QGIS_PROCESS, "run", "segmenter:kmeans", *(["--json"] if json else []), "--", f"INPUT={source}",
               f"OUTPUT={out}"]
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:  # never a full pipe
        process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while not engine_scratch(tmp_path / "scratch"):  # the engine made its scratch folder: kmeans runs
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr").read_text()
            time.sleep(0.05)
        time.sleep(1.0)  # into the run: windows being described
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        process.wait(timeout=60)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = (tmp_path / "stderr").read_text()
    assert "Caught signal: Interrupt" in stderr  # qgis_process's own handler got it, during the run
    assert process.returncode != 0 and "Cancelled by the user; no output was written." in stderr
    assert took < 1.0, f"exited {took:.2f} s after SIGINT"
    assert os.listdir(tmp_path / "out") == []  # no output, no partial file, no .qml
    assert engine_scratch(tmp_path / "scratch") == []  # the scratch features are gone
