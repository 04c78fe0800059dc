"""Adding a post-processing step is one file: tests/boundary_step.py adds one (boundaries of segments, with a halo);
this runs it through the engine's executor here, with every thread count and window size, and on a real Dask
cluster that is handed the file.

The step knows nothing of where it runs: it opens its input, reads a window grown by its halo and computes the
window. The executor orders the results, reports progress, cancels, and sends the step to the workers."""

import numpy as np
import pytest
from boundary_step import BoundaryStep, boundaries
from osgeo import gdal

from map_segmenter.engine.rasters.labels import LabelRaster
from map_segmenter.engine.rasters.windows import plan_windows
from map_segmenter.engine.runtime.errors import Cancelled
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.steps.window_step import Executor

from helpers import write_raster


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    rng = np.random.default_rng(7)
    ids = np.repeat(np.repeat(rng.integers(0, 5, (23, 31)), 7, axis=0), 5, axis=1).astype(np.uint8)
    return write_raster(tmp_path_factory.mktemp("step") / "labels.tif", ids, nodata=0), ids


def run(step, windows, scheduler=None, progress=None):
    result = np.zeros((161, 155), np.uint8)
    with Executor(scheduler, progress or Progress(), memory_mb=64) as executor:
        for window, pixels in executor.map(step, windows):
            result[window.yoff : window.yoff + window.height, window.xoff : window.xoff + window.width] = pixels
    return result


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("window_pixels", [155, 1000, 161 * 155])
def test_a_step_added_in_one_file_runs_here_window_by_window_as_on_the_whole_raster(labels, workers,
                                                                                  window_pixels):
    path, ids = labels
    step = BoundaryStep(path, reach=2)
    type(step).workers = workers
    try:
        windows = plan_windows(155, 161, window_pixels)
        messages = []
        result = run(step, windows, progress=Progress(report=lambda fraction, message: messages.append(message)))
    finally:
        del type(step).workers
    expected = boundaries(ids, 2)
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(result, expected)
    assert messages[-1] == f"Finding boundaries ({len(windows)}/{len(windows)} windows)"


def test_the_same_step_runs_on_a_dask_cluster_with_the_same_pixels(labels, dask_cluster):
    import boundary_step

    path, ids = labels
    windows = plan_windows(155, 161, 2000)
    before = sum(dask_cluster.tasks_run("boundary").values())
    with dask_cluster.client() as client:  # the new step's one file, as a user hands it to a cluster
        client.upload_file(boundary_step.__file__)
    result = run(BoundaryStep(path), windows, scheduler=dask_cluster.address)
    np.testing.assert_array_equal(result, boundaries(ids, 1))
    assert sum(dask_cluster.tasks_run("boundary").values()) == before + len(windows) > 2


def test_cancel_stops_between_windows_and_the_inputs_are_closed(labels, monkeypatch):
    path, _ = labels
    opened = []
    original = LabelRaster.open

    def tracked(*args, **kwargs):
        opened.append(original(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(LabelRaster, "open", tracked)
    calls = []
    progress = Progress(is_cancelled=lambda: len(calls) > 3 or calls.append(1))
    with pytest.raises(Cancelled):
        run(BoundaryStep(path), plan_windows(155, 161, 500), progress=progress)
    assert len(opened) == 1 and opened[0].dataset is None  # closed by the executor that opened it
    assert gdal.Open(path) is not None
