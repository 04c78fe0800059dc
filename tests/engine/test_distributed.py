"""Runs on a real Dask cluster (a `dask scheduler` and two `dask worker` processes on localhost) give the same bytes
as runs in this process, and a cluster that cannot be used fails fast with nothing at the destination."""

import hashlib

import numpy as np
import pytest

from map_segmenter.engine.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.progress import Progress

from helpers import KAMPALA, crop_real, read_array


def digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def tasks_per_worker(cluster):
    """{worker address: Map Segmenter tasks it has run so far}, from the workers' own transition logs."""
    with cluster.client() as client:  # a lambda travels by value (this module is not importable on the workers)
        return client.run(lambda dask_worker: len({entry[0] for entry in dask_worker.state.log
                                                   if str(entry[0]).startswith("segmenter-")}))


def same_files(first, second):
    """Byte-identical files, and (for a readable message) identical pixels."""
    np.testing.assert_array_equal(read_array(first), read_array(second))
    assert digest(first) == digest(second)


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    return crop_real(KAMPALA, tmp_path_factory.mktemp("dask_input") / "crop.tif", 517, 389, 1201, 803)


@pytest.mark.parametrize("features", [False, True], ids=["labels", "with_features"])
def test_kmeans_on_the_cluster_equals_a_local_run(dask_cluster, crop, tmp_path, features):
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    notes = []
    before = tasks_per_worker(dask_cluster)
    # MEMORY_MB 1: 14 windows, so both workers get some of them
    expected = segment_kmeans(crop, str(local), segments=6, memory_mb=1,
                              features_path=str(tmp_path / "local_features.tif") if features else None)
    result = segment_kmeans(crop, str(remote), segments=6, memory_mb=1, scheduler=dask_cluster.address,
                            features_path=str(tmp_path / "remote_features.tif") if features else None,
                            progress=Progress(log=notes.append))
    assert expected.windows == result.windows == 14
    assert any("Dask cluster at" in note and "2 workers" in note for note in notes), notes
    same_files(local, remote)
    np.testing.assert_array_equal(expected.centres, result.centres)
    if features:
        same_files(tmp_path / "local_features.tif", tmp_path / "remote_features.tif")
    after = tasks_per_worker(dask_cluster)
    assert len(after) == 2 and all(after[worker] > before.get(worker, 0) for worker in after), (before, after)
