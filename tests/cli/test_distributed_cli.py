"""qgis_process with SCHEDULER=: segmenter:kmeans on a real Dask cluster (a `dask scheduler` and two `dask worker`
processes) writes the same file as the engine in this process; a scheduler that does not answer fails within the
timeout, saying so, with nothing at the destination."""

import hashlib
import time

import numpy as np

from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import qgis_process, read_array


def digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_kmeans_through_qgis_process_on_the_cluster(dask_cluster, tmp_path, kampala_crop):
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    segment_kmeans(kampala_crop, str(local), segments=5, memory_mb=1)
    before = sum(dask_cluster.tasks_run().values())
    completed = qgis_process("run", "segmenter:kmeans", "--", f"INPUT={kampala_crop}", "SEGMENTS=5", "MEMORY_MB=1",
                             f"SCHEDULER={dask_cluster.address}", f"OUTPUT={remote}")
    assert f"Dask cluster at {dask_cluster.address}: 2 workers" in completed.stdout + completed.stderr
    assert sum(dask_cluster.tasks_run().values()) >= before + 2 * 14  # 14 windows, two passes
    np.testing.assert_array_equal(read_array(local), read_array(remote))
    assert digest(local) == digest(remote)


def test_blur_through_qgis_process_names_a_scheduler_that_does_not_answer(tmp_path, kampala_crop):
    labels, out = tmp_path / "labels.tif", tmp_path / "smooth.tif"
    segment_kmeans(kampala_crop, str(labels), segments=5)
    started = time.monotonic()
    completed = qgis_process("run", "segmenter:blur", "--", f"INPUT={labels}", "SCHEDULER=127.0.0.1:9",
                             f"OUTPUT={out}", check=False)  # port 9 (discard): nothing listens there
    assert time.monotonic() - started < 25  # the 10 s timeout and QGIS's start
    assert completed.returncode != 0
    assert "Could not reach the Dask scheduler at tcp://127.0.0.1:9" in completed.stdout + completed.stderr
    assert not out.exists() and not list(tmp_path.glob(".smooth*"))
