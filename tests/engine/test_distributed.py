"""Runs on a real Dask cluster (a `dask scheduler` and two `dask worker` processes on localhost) give the same bytes
as runs in this process, and a cluster that cannot be used fails fast with nothing at the destination."""

import hashlib

import numpy as np
import pytest

from map_segmenter.engine.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.progress import Progress

from helpers import KAMPALA, ROOT, crop_real, read_array


def digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


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
    before = dask_cluster.tasks_run()
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
    after = dask_cluster.tasks_run()
    assert len(after) == 2 and all(after[worker] > before.get(worker, 0) for worker in after), (before, after)


@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
def test_cnn_on_the_cluster_equals_a_local_run(dask_cluster, crop, tmp_path, upsample):
    from map_segmenter.engine.cnn_segmentation import segment_cnn

    model = str(ROOT / "onnx_models" / "student_s4_v1.onnx")
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    before = dask_cluster.tasks_run()
    # TILE_SIZE 128, BATCH_SIZE 2, MEMORY_MB 1: 35 tiles in 18 tasks and 14 label windows
    arguments = dict(segments=5, tile_size=128, batch_size=2, memory_mb=1, upsample=upsample)
    expected = segment_cnn(crop, str(local), model, features_path=str(tmp_path / "local_features.tif"), **arguments)
    result = segment_cnn(crop, str(remote), model, features_path=str(tmp_path / "remote_features.tif"),
                         scheduler=dask_cluster.address, **arguments)
    assert (expected.tiles, expected.windows) == (result.tiles, result.windows) and result.windows > 4
    same_files(tmp_path / "local_features.tif", tmp_path / "remote_features.tif")
    same_files(local, remote)
    after = dask_cluster.tasks_run()
    assert all(after[worker] > before.get(worker, 0) for worker in after), (before, after)


@pytest.fixture(scope="module")
def segmented(crop, tmp_path_factory):
    """Labels and block descriptors of the crop (K-Means, K = 6), the inputs of blur and knn_refine."""
    folder = tmp_path_factory.mktemp("dask_segmented")
    segment_kmeans(crop, str(folder / "labels.tif"), segments=6, features_path=str(folder / "features.tif"))
    return str(folder / "labels.tif"), str(folder / "features.tif")


@pytest.mark.parametrize("method", ["majority", "gaussian"])
def test_blur_on_the_cluster_equals_a_local_run(dask_cluster, segmented, tmp_path, method):
    from map_segmenter.engine.blur import blur_labels

    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    # MEMORY_MB 1: strips of a few rows, each grown by the kernel's reach
    expected = blur_labels(segmented[0], str(local), method=method, strength="high", memory_mb=1)
    result = blur_labels(segmented[0], str(remote), method=method, strength="high", memory_mb=1,
                         scheduler=dask_cluster.address)
    assert expected.windows == result.windows > 2
    assert (expected.changed, expected.present) == (result.changed, result.present) and result.changed > 0
    same_files(local, remote)


def test_knn_refine_on_the_cluster_equals_a_local_run(dask_cluster, segmented, tmp_path):
    from map_segmenter.engine.knn_refine import refine_knn

    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    expected = refine_knn(*segmented, str(local), memory_mb=1)
    result = refine_knn(*segmented, str(remote), memory_mb=1, scheduler=dask_cluster.address)
    assert expected.windows == result.windows > 2
    same_files(local, remote)
    assert not np.array_equal(read_array(remote), read_array(segmented[0]))  # the refinement did something
