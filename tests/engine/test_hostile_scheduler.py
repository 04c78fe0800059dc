"""A SCHEDULER address where something accepts the connection but does not speak Dask (says nothing, sends
garbage, closes at once), or a scheduler that stops answering mid-run: every wait on it is bounded by the timeout
and stopped by cancel within a second, with a plain message and nothing written (``distributed.wait_on``)."""

import os
import signal
import time

import pytest
from hostile import BEHAVIOURS, HostileServer, Untouched, connect_message

from map_segmenter.engine.backends import distributed
from map_segmenter.engine.runtime.errors import Cancelled, ClusterError
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

from helpers import KAMPALA, DaskProcesses, crop_real

TIMEOUT = 2.0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A crop, its labels and features (kmeans, K = 4): the inputs of each entry point."""
    folder = tmp_path_factory.mktemp("hostile_inputs")
    crop = crop_real(KAMPALA, folder / "crop.tif", 160, 120, 1201, 803)
    segment_kmeans(crop, str(folder / "labels.tif"), segments=4, features_path=str(folder / "features.tif"))
    return folder


def run_entry(entry, folder, out, scheduler, progress=None):
    progress = progress or Progress()
    if entry == "kmeans":
        return segment_kmeans(str(folder / "crop.tif"), str(out), segments=4, scheduler=scheduler, progress=progress)
    if entry == "cnn":
        from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn

        from helpers import ROOT
        return segment_cnn(str(folder / "crop.tif"), str(out), str(ROOT / "onnx_models" / "student_s4_v1.onnx"),
                           segments=4, scheduler=scheduler, progress=progress)
    if entry == "blur":
        from map_segmenter.engine.steps.blur import blur_labels
        return blur_labels(str(folder / "labels.tif"), str(out), scheduler=scheduler, progress=progress)
    from map_segmenter.engine.steps.knn_refine import refine_knn
    return refine_knn(str(folder / "labels.tif"), str(folder / "features.tif"), str(out), scheduler=scheduler,
                      progress=progress)


@pytest.mark.parametrize("entry", ["kmeans", "cnn", "blur", "knn_refine"])
@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_a_scheduler_address_that_does_not_speak_dask_fails_within_the_timeout(inputs, tmp_path, monkeypatch,
                                                                               behaviour, entry):
    if entry == "cnn":
        pytest.importorskip("onnxruntime")
    monkeypatch.setattr(distributed, "TIMEOUT", TIMEOUT)
    untouched = Untouched(inputs, tmp_path)
    with HostileServer(behaviour) as server:
        started = time.monotonic()
        with pytest.raises(ClusterError) as error:
            run_entry(entry, inputs, tmp_path / "out.tif", server.address)
        took = time.monotonic() - started
    assert str(error.value) == connect_message(server.address, TIMEOUT, BEHAVIOURS[behaviour])
    assert server.accepted >= 1
    assert took < TIMEOUT + 5
    untouched.check()


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_connect_to_a_silent_server_is_bounded_by_the_default_timeout(behaviour):
    """Before: a silent server kept connect waiting without limit (still waiting after 500 s)."""
    with HostileServer(behaviour) as server:
        started = time.monotonic()
        with pytest.raises(ClusterError) as error:
            distributed.connect(server.address, Progress())
        took = time.monotonic() - started
    assert str(error.value) == connect_message(server.address, distributed.TIMEOUT, BEHAVIOURS[behaviour])
    assert took < distributed.TIMEOUT + 5


@pytest.mark.parametrize("behaviour", ["silent", "garbage"])
def test_cancel_while_waiting_for_a_silent_scheduler_stops_within_a_second(inputs, tmp_path, behaviour):
    untouched = Untouched(inputs, tmp_path)
    asked = []
    started = time.monotonic()

    def is_cancelled():
        if not asked and time.monotonic() - started > 1.0:
            asked.append(time.monotonic())
        return bool(asked)

    with HostileServer("silent") as server:
        with pytest.raises(Cancelled, match="^Cancelled by the user; no output was written.$"):
            run_entry("kmeans", inputs, tmp_path / "out.tif", server.address,
                      Progress(is_cancelled=is_cancelled))
    assert time.monotonic() - asked[0] < 1.0
    untouched.check()


def test_a_scheduler_that_stops_answering_mid_run_is_reported_within_the_timeout(inputs, tmp_path, monkeypatch):
    """The scheduler's process is stopped (SIGSTOP) during pass 1: its connection stays open and says nothing. The
    run stops once it has not answered for the timeout; before, the result wait asked it without limit."""
    monkeypatch.setattr(distributed, "TIMEOUT", TIMEOUT)
    (tmp_path / "cluster").mkdir()
    (tmp_path / "out").mkdir()
    cluster = DaskProcesses(tmp_path / "cluster", workers=1)
    untouched = Untouched(inputs, tmp_path / "out")
    stopped = []

    def report(fraction, message):
        if message.startswith("Describing blocks (") and not stopped:
            os.kill(cluster.scheduler.pid, signal.SIGSTOP)
            stopped.append(time.monotonic())

    try:
        with pytest.raises(ClusterError) as error:
            segment_kmeans(str(KAMPALA), str(tmp_path / "out" / "labels.tif"), memory_mb=2,
                           scheduler=cluster.address, progress=Progress(report=report))
        took = time.monotonic() - stopped[0]
    finally:
        if stopped:
            os.kill(cluster.scheduler.pid, signal.SIGCONT)
        cluster.close()
    assert str(error.value) == (f"The Dask scheduler at {cluster.address} has not answered for {TIMEOUT:g} s; no "
                                f"output was written.")
    assert took < TIMEOUT + 5
    untouched.check()
