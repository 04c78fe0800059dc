"""qgis_process with a SCHEDULER that accepts and never speaks Dask: the run fails after the timeout with the plain
message, and one Ctrl+C while it waits stops it within a second; nothing written, no traceback."""

import os
import signal
import subprocess
import time

import pytest
from hostile import HostileServer, Untouched, connect_message, no_traceback

from helpers import PLUGINS, QGIS_PROCESS, ROOT, qgis_process

# QGIS (not the plugin) stores the input's statistics beside it when it loads the layer: GDAL's PAM sidecar
QGIS_PAM = "kampala_crop.tif.aux.xml"


def env():
    return dict(os.environ, QGIS_PLUGINPATH=str(PLUGINS), QT_QPA_PLATFORM="offscreen",
                QGIS_CUSTOM_CONFIG_PATH=str(ROOT / ".build" / "qgis-profile"))


@pytest.mark.parametrize("algorithm", ["kmeans", "blur"])
def test_a_silent_scheduler_fails_after_the_timeout_with_the_message(tmp_path, kampala_crop, algorithm):
    from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

    (tmp_path / "in").mkdir()
    labels = tmp_path / "in" / "labels.tif"
    segment_kmeans(kampala_crop, str(labels), segments=4)
    source = kampala_crop if algorithm == "kmeans" else labels
    untouched = Untouched(tmp_path, os.path.dirname(kampala_crop))
    with HostileServer("silent") as server:
        started = time.monotonic()
        completed = qgis_process("run", f"segmenter:{algorithm}", "--", f"INPUT={source}",
                                 f"SCHEDULER={server.address}", f"OUTPUT={tmp_path / 'out.tif'}", check=False)
        took = time.monotonic() - started
    text = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert connect_message(server.address, 10, "no answer") in text
    no_traceback(text)
    assert 10 <= took < 10 + 5 + 10  # the timeout, and QGIS's start
    untouched.check(allowed=(QGIS_PAM,))


def test_one_ctrl_c_while_waiting_for_a_silent_scheduler_stops_within_a_second(tmp_path, kampala_crop):
    qgis_process("list")  # enables the plugin in the test profile
    untouched = Untouched(tmp_path, os.path.dirname(kampala_crop))
    with HostileServer("silent") as server, open(tmp_path / "stdout", "w") as stdout, \
            open(tmp_path / "stderr", "w") as stderr:
        process = subprocess.Popen([QGIS_PROCESS, "run", "segmenter:kmeans", "--", f"INPUT={kampala_crop}",
                                    f"SCHEDULER={server.address}", f"OUTPUT={tmp_path / 'out.tif'}"],
                                   env=env(), stdout=stdout, stderr=stderr)
        try:
            deadline = time.monotonic() + 60
            while not server.accepted:  # the run is connecting: it waits on the silent server
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr").read_text()
                time.sleep(0.05)
            time.sleep(1.0)
            assert process.poll() is None
            process.send_signal(signal.SIGINT)
            sent = time.monotonic()
            process.wait(timeout=30)
            took = time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    text = (tmp_path / "stdout").read_text() + (tmp_path / "stderr").read_text()
    assert process.returncode != 0 and "Cancelled by the user; no output was written." in text
    no_traceback(text)
    assert took < 1.0, f"exited {took:.2f} s after SIGINT"
    untouched.check(allowed=("stdout", "stderr", QGIS_PAM))
