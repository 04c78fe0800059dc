"""The plugin as users reach it from the shell: ``qgis_process`` in a subprocess (QGIS loads the plugin itself)."""

import json
import os
import subprocess

import numpy as np

from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import QGIS_PROCESS, ROOT, qgis_process, read_array


def test_list_shows_the_provider_and_kmeans():
    listing = qgis_process("list").stdout
    assert "Map Segmenter" in listing
    assert "segmenter:kmeans\tK-Means segmentation" in listing


def test_help_documents_every_parameter():
    text = qgis_process("help", "segmenter:kmeans").stdout
    for name in ("INPUT", "BANDS", "SEGMENTS", "BLOCK_SIZE", "SEED", "REFERENCE", "MEMORY_MB", "OUTPUT", "FEATURES"):
        assert f"{name}:" in text
    assert "segments 1..K ordered from dark to light" in text
    assert "<b>" not in text


def test_run_writes_the_same_labels_as_the_engine(tmp_path, kampala_crop):
    out = tmp_path / "cli.tif"
    completed = qgis_process("run", "segmenter:kmeans", "--json", "--", f"INPUT={kampala_crop}", "SEGMENTS=5",
                             "BLOCK_SIZE=8", "SEED=1", f"OUTPUT={out}")
    results = json.loads(completed.stdout)["results"]
    assert results["OUTPUT"] == str(out) and results["SEGMENT_COUNT"] == 5
    segment_kmeans(kampala_crop, str(tmp_path / "engine.tif"), segments=5, block=8, seed=1)
    assert np.array_equal(read_array(out), read_array(tmp_path / "engine.tif"))
    assert (tmp_path / "cli.qml").read_text() == (tmp_path / "engine.qml").read_text()  # the same style sidecar


def test_run_reports_bad_input_and_fails(tmp_path, kampala_crop):
    out = tmp_path / "bad.tif"
    completed = qgis_process("run", "segmenter:kmeans", "--", f"INPUT={kampala_crop}", "BLOCK_SIZE=1000",
                             f"OUTPUT={out}", check=False)
    assert completed.returncode != 0
    assert "BLOCK_SIZE 1000 px is larger than the raster" in completed.stdout + completed.stderr
    assert not out.exists()


def test_built_zip_installs_into_a_fresh_qgis_profile(tmp_path, kampala_crop):
    import zipfile

    build = subprocess.run(["python", str(ROOT / "scripts" / "build_zip.py")], capture_output=True, text=True,
                           check=True)
    archive = build.stdout.strip()
    plugins = tmp_path / "plugins"
    with zipfile.ZipFile(archive) as handle:
        names = handle.namelist()
        handle.extractall(plugins)
    assert "map_segmenter/metadata.txt" in names
    assert not [name for name in names if name.startswith(("map_segmenter/tests/", "map_segmenter/bench/"))]
    env = dict(os.environ, QGIS_PLUGINPATH=str(plugins), QT_QPA_PLATFORM="offscreen",
               QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"))
    subprocess.run([QGIS_PROCESS, "plugins", "enable", "map_segmenter"], env=env, capture_output=True, check=True)
    listing = subprocess.run([QGIS_PROCESS, "list"], env=env, capture_output=True, text=True, check=True).stdout
    assert "segmenter:kmeans" in listing
    # the installed copy runs, and its result is the engine's
    out = tmp_path / "from_zip.tif"
    subprocess.run([QGIS_PROCESS, "run", "segmenter:kmeans", "--", f"INPUT={kampala_crop}", "SEGMENTS=4",
                    f"OUTPUT={out}"], env=env, capture_output=True, check=True)
    segment_kmeans(kampala_crop, str(tmp_path / "engine.tif"), segments=4)
    assert np.array_equal(read_array(out), read_array(tmp_path / "engine.tif"))


def test_bands_as_a_comma_separated_list(tmp_path, kampala_crop):
    """BANDS=3,2,1 on the command line (QGIS read it as band 0: "BANDS [0] out of range")."""
    out = tmp_path / "cli.tif"
    completed = qgis_process("run", "segmenter:kmeans", "--", f"INPUT={kampala_crop}", "BANDS=3,2,1", "SEGMENTS=4",
                             f"OUTPUT={out}")
    assert "BANDS: bands 3, 2, 1 (from '3,2,1')" in completed.stdout
    segment_kmeans(kampala_crop, str(tmp_path / "engine.tif"), segments=4, bands=[3, 2, 1])
    assert np.array_equal(read_array(out), read_array(tmp_path / "engine.tif"))
