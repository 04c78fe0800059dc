"""Runs on a real Dask cluster (a `dask scheduler` and two `dask worker` processes on localhost) give the same bytes
as runs in this process, and a cluster that cannot be used fails fast with nothing at the destination."""

import hashlib
import os
import shutil
import time

import numpy as np
import pytest

from map_segmenter.engine.backends import distributed
from map_segmenter.engine.runtime.errors import Cancelled, ClusterError, InputError
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import KAMPALA, ROOT, DaskProcesses, crop_real, read_array


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
    # MEMORY_MB 1: 20 windows, so both workers get some of them
    expected = segment_kmeans(crop, str(local), segments=6, memory_mb=1,
                              features_path=str(tmp_path / "local_features.tif") if features else None)
    result = segment_kmeans(crop, str(remote), segments=6, memory_mb=1, scheduler=dask_cluster.address,
                            features_path=str(tmp_path / "remote_features.tif") if features else None,
                            progress=Progress(log=notes.append))
    assert expected.windows == result.windows == 20
    assert any("Dask cluster at" in note and "2 workers" in note for note in notes), notes
    same_files(local, remote)
    np.testing.assert_array_equal(expected.centres, result.centres)
    if features:
        same_files(tmp_path / "local_features.tif", tmp_path / "remote_features.tif")
    after = dask_cluster.tasks_run()
    assert len(after) == 2 and all(after[worker] > before.get(worker, 0) for worker in after), (before, after)


@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
def test_cnn_on_the_cluster_equals_a_local_run(dask_cluster, crop, tmp_path, upsample):
    from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn

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


@pytest.mark.parametrize("method", ["kmeans", "cnn"])
def test_automatic_k_on_the_cluster_equals_a_local_run(dask_cluster, crop, tmp_path, method):
    """SEGMENTS = 0: the choice is made on the same seeded sample, so the cluster writes the same bytes."""
    from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn

    def run(path, **cluster):
        if method == "kmeans":
            return segment_kmeans(crop, str(path), segments=0, memory_mb=1, **cluster)
        return segment_cnn(crop, str(path), str(ROOT / "onnx_models" / "student_s4_v1.onnx"), segments=0,
                           tile_size=128, batch_size=2, memory_mb=1, **cluster)

    expected = run(tmp_path / "local.tif")
    result = run(tmp_path / "remote.tif", scheduler=dask_cluster.address)
    assert expected.criterion == result.criterion and 2 <= result.criterion["k"] <= 12
    same_files(tmp_path / "local.tif", tmp_path / "remote.tif")


@pytest.fixture(scope="module")
def segmented(crop, tmp_path_factory):
    """Labels and block descriptors of the crop (K-Means, K = 6), the inputs of blur and knn_refine."""
    folder = tmp_path_factory.mktemp("dask_segmented")
    segment_kmeans(crop, str(folder / "labels.tif"), segments=6, features_path=str(folder / "features.tif"))
    return str(folder / "labels.tif"), str(folder / "features.tif")


@pytest.mark.parametrize("method", ["majority", "gaussian"])
def test_blur_on_the_cluster_equals_a_local_run(dask_cluster, segmented, tmp_path, method):
    from map_segmenter.engine.steps.blur import blur_labels

    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    # MEMORY_MB 1: strips of a few rows, each grown by the kernel's reach
    expected = blur_labels(segmented[0], str(local), method=method, strength="high", memory_mb=1)
    result = blur_labels(segmented[0], str(remote), method=method, strength="high", memory_mb=1,
                         scheduler=dask_cluster.address)
    assert expected.windows == result.windows > 2
    assert (expected.changed, expected.present) == (result.changed, result.present) and result.changed > 0
    same_files(local, remote)


def test_render_on_the_cluster_equals_a_local_run(dask_cluster, segmented, crop, tmp_path):
    from map_segmenter.engine.steps.render import render_labels

    runs = {}
    for name, scheduler in (("local", None), ("remote", dask_cluster.address)):
        runs[name] = render_labels(segmented[0], str(tmp_path / f"{name}.tif"), palette="mean_colour", image_path=crop,
                                   composite_path=str(tmp_path / f"{name}_composite.tif"), memory_mb=1,
                                   scheduler=scheduler)
    assert runs["local"].colours == runs["remote"].colours
    same_files(tmp_path / "local.tif", tmp_path / "remote.tif")
    same_files(tmp_path / "local_composite.tif", tmp_path / "remote_composite.tif")
    assert sum(dask_cluster.tasks_run("composite").values()) > 2


def test_statistics_on_the_cluster_equal_a_local_run(dask_cluster, segmented, crop, tmp_path):
    from map_segmenter.engine.steps.statistics import segment_statistics

    before = sum(dask_cluster.tasks_run("count").values())
    local = segment_statistics(segmented[0], str(tmp_path / "local.csv"), image_path=crop, memory_mb=1)
    remote = segment_statistics(segmented[0], str(tmp_path / "remote.csv"), image_path=crop, memory_mb=1,
                                scheduler=dask_cluster.address)
    assert local.windows == remote.windows > 2
    assert sum(dask_cluster.tasks_run("count").values()) == before + remote.windows
    assert (tmp_path / "local.csv").read_bytes() == (tmp_path / "remote.csv").read_bytes()


def test_merge_on_the_cluster_equals_a_local_run(dask_cluster, segmented, tmp_path):
    from map_segmenter.engine.steps.merge import merge_labels

    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    before = sum(dask_cluster.tasks_run("merge").values())
    expected = merge_labels(segmented[0], str(local), 3, memory_mb=1)
    result = merge_labels(segmented[0], str(remote), 3, memory_mb=1, scheduler=dask_cluster.address)
    assert expected.windows == result.windows > 2
    assert sum(dask_cluster.tasks_run("merge").values()) == before + result.windows  # looked up on the workers
    assert (expected.segments, expected.present) == (result.segments, result.present) == (3, 3)
    same_files(local, remote)
    np.testing.assert_array_equal(read_array(remote), expected.table[read_array(segmented[0])])


@pytest.mark.parametrize("centres", ["metadata", "recomputed"])
def test_knn_refine_on_the_cluster_equals_a_local_run(dask_cluster, segmented, tmp_path, centres):
    from osgeo import gdal

    from map_segmenter.engine.steps.knn_refine import refine_knn

    if centres == "recomputed":  # labels without metadata: the centres come from exact sums merged over windows
        labels = str(tmp_path / "bare_labels.tif")
        gdal.Translate(labels, segmented[0])
        dataset = gdal.Open(labels, gdal.GA_Update)
        dataset.SetMetadata({})
        dataset = None
        segmented = (labels, segmented[1])
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    before = {kind: sum(dask_cluster.tasks_run(kind).values()) for kind in ("scan", "refine")}
    expected = refine_knn(*segmented, str(local), memory_mb=1)
    result = refine_knn(*segmented, str(remote), memory_mb=1, scheduler=dask_cluster.address)
    assert expected.windows == result.windows > 2
    assert (expected.index_points, expected.scale) == (result.index_points, result.scale)
    assert expected.centres_source == result.centres_source == centres
    np.testing.assert_array_equal(expected.centres, result.centres)
    for kind in ("scan", "refine"):  # the index scan and the refinement both ran on the workers
        assert sum(dask_cluster.tasks_run(kind).values()) == before[kind] + result.windows
    same_files(local, remote)
    assert not np.array_equal(read_array(remote), read_array(segmented[0]))  # the refinement did something


def _worker_address(client, process):
    return next(address for address, pid in client.run(os.getpid).items() if pid == process.pid)


def test_a_worker_killed_mid_run_changes_nothing(dask_cluster, crop, tmp_path):
    """A third worker is killed (SIGKILL) while it holds windows of the run, computed or being computed: the
    scheduler runs them again elsewhere and the output is the same bytes."""
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    segment_kmeans(crop, str(local), segments=6, memory_mb=1, features_path=str(tmp_path / "local_features.tif"))
    victim = dask_cluster.add_worker()
    dask_cluster.wait_for(3)
    killed = []
    with dask_cluster.client() as client:
        address = _worker_address(client, victim)

        def report(fraction, message):
            if killed or not message.startswith("Describing blocks ("):
                return
            held = [key for key in client.has_what().get(address, ()) + client.processing().get(address, ())
                    if str(key).startswith("segmenter-")]
            if held:  # this process gathers in order and waits here: the victim's windows are not gathered yet
                victim.kill()
                victim.wait()
                killed.extend(held)

        segment_kmeans(crop, str(remote), segments=6, memory_mb=1, scheduler=dask_cluster.address,
                       features_path=str(tmp_path / "remote_features.tif"), progress=Progress(report=report))
        assert killed, "the third worker never held a window of the run"
        assert address not in client.scheduler_info()["workers"]
    same_files(local, remote)
    same_files(tmp_path / "local_features.tif", tmp_path / "remote_features.tif")


def test_cancel_stops_within_a_second_and_cancels_the_outstanding_tasks(dask_cluster, crop, tmp_path):
    out = tmp_path / "segments.tif"
    asked = []

    def report(fraction, message):
        if message.startswith("Describing blocks (2/") and not asked:
            asked.append(time.monotonic())

    with pytest.raises(Cancelled):
        segment_kmeans(crop, str(out), memory_mb=1, scheduler=dask_cluster.address,
                       progress=Progress(report=report, is_cancelled=lambda: bool(asked)))
    assert time.monotonic() - asked[0] < 1.0
    assert list(tmp_path.iterdir()) == []
    with dask_cluster.client() as client:
        deadline = time.monotonic() + 5
        while True:  # the scheduler forgets the run's tasks once their futures are cancelled
            left = client.run_on_scheduler(lambda dask_scheduler: [str(key) for key in dask_scheduler.tasks
                                                                   if str(key).startswith("segmenter-")])
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert left == []


def test_a_scheduler_that_dies_mid_run_stops_the_run_with_nothing_written(tmp_path):
    (tmp_path / "cluster").mkdir()
    cluster = DaskProcesses(tmp_path / "cluster", workers=1)
    out = tmp_path / "segments.tif"
    stopped = []

    def report(fraction, message):
        if message.startswith("Describing blocks (3/") and not stopped:
            cluster.scheduler.kill()
            cluster.scheduler.wait()
            stopped.append(time.monotonic())

    try:
        with pytest.raises(ClusterError, match="The connection to the Dask scheduler at .* was lost during the run"):
            segment_kmeans(str(KAMPALA), str(out), memory_mb=2, scheduler=cluster.address,
                           progress=Progress(report=report))
        assert time.monotonic() - stopped[0] < distributed.TIMEOUT
    finally:
        cluster.close()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cluster"]


def test_a_scheduler_that_does_not_answer_is_reported_within_the_timeout(tmp_path):
    started = time.monotonic()
    with pytest.raises(ClusterError, match=r"Could not reach the Dask scheduler at tcp://127\.0\.0\.1:9 within 2 s"):
        distributed.connect("127.0.0.1:9", Progress(), timeout=2)
    assert time.monotonic() - started < 4


def test_a_scheduler_without_workers_is_reported(tmp_path, crop, monkeypatch):
    monkeypatch.setattr(distributed, "TIMEOUT", 2.0)
    cluster = DaskProcesses(tmp_path, workers=0)
    try:
        with pytest.raises(ClusterError, match="has no workers .* Start some with: dask worker tcp://"):
            segment_kmeans(crop, str(tmp_path / "segments.tif"), scheduler=cluster.address)
    finally:
        cluster.close()
    assert not (tmp_path / "segments.tif").exists()


def test_workers_with_another_engine_are_named(tmp_path, crop):
    """A worker importing another copy of map_segmenter whose engine differs by one line is refused by name."""
    other = tmp_path / "other" / "map_segmenter"
    shutil.copytree(ROOT / "engine", other / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "__init__.py", other / "__init__.py")
    shutil.copy(ROOT / "metadata.txt", other / "metadata.txt")
    with open(other / "engine" / "runtime" / "errors.py", "a") as handle:
        handle.write("# a changed line\n")
    cluster = DaskProcesses(tmp_path, workers=1)
    try:
        odd = cluster.add_worker(env={"PYTHONPATH": str(tmp_path / "other")})
        cluster.wait_for(2)
        with cluster.client() as client:
            address = _worker_address(client, odd)
        with pytest.raises(ClusterError, match="1 of 2 Dask workers at .* run another Map Segmenter engine") as error:
            segment_kmeans(crop, str(tmp_path / "segments.tif"), scheduler=cluster.address)
    finally:
        cluster.close()
    assert address in str(error.value) and distributed.engine_fingerprint()["engine_sha256"] in str(error.value)
    assert not (tmp_path / "segments.tif").exists()


def test_without_distributed_the_message_gives_the_install_command(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_distributed(name, *arguments, **keywords):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError(name)
        return real_import(name, *arguments, **keywords)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    with pytest.raises(InputError) as error:
        distributed.connect("tcp://10.0.0.5:8786", Progress())
    assert f'{distributed.python_executable()} -m pip install "dask[distributed]"' in str(error.value)
    assert distributed.connect("", Progress()) is None  # empty: this process, no import needed


def test_the_python_api_takes_a_client_of_a_local_cluster_and_leaves_it_open(crop, tmp_path):
    from distributed import Client, LocalCluster

    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    segment_kmeans(crop, str(local), segments=4, memory_mb=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        segment_kmeans(crop, str(remote), segments=4, memory_mb=1, scheduler=client)
        assert client.status == "running" and client.submit(sum, [1, 2]).result() == 3  # still the caller's
    same_files(local, remote)
