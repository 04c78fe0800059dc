"""Helpers shared by the tests: real sample rasters and small GeoTIFF writers."""

import os
import subprocess
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / ".build" / "plugins"

DATA = ROOT / "data"
KAMPALA = DATA / "kampala_oam" / "kampala_oam_z21_mosaic.tif"
SWISS = DATA / "georef" / "swissimage_zurich_detectree_1091-322_00.tif"
NAIP = DATA / "georef" / "naip_m_4709963_se_14_1_20190904_5m_RGBN.tif"
DUBAI_IMAGES = DATA / "dubai_hitl" / "images"


def write_raster(path, array, geotransform=(500000.0, 0.5, 0.0, 5200000.0, 0.0, -0.5), epsg=32633,
                 nodata=None, alpha_band=None, options=("TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64")):
    """Write (bands, h, w) ``array`` as a GeoTIFF with a real CRS; returns the path as str."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    types = {np.uint8: gdal.GDT_Byte, np.uint16: gdal.GDT_UInt16, np.int16: gdal.GDT_Int16,
             np.float32: gdal.GDT_Float32, np.float64: gdal.GDT_Float64}
    data_type = types[array.dtype.type]
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), array.shape[2], array.shape[1], array.shape[0],
                                                   data_type, list(options))
    if geotransform is not None:
        dataset.SetGeoTransform(geotransform)
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        dataset.SetProjection(srs.ExportToWkt())
    for index in range(array.shape[0]):
        band = dataset.GetRasterBand(index + 1)
        band.WriteArray(array[index])
        if nodata is not None:
            band.SetNoDataValue(nodata)
        if alpha_band == index + 1:
            band.SetColorInterpretation(gdal.GCI_AlphaBand)
    dataset = None
    return str(path)


GT = (500000.0, 0.5, 0.0, 5200000.0, 0.0, -0.5)


def write_pair(tmp_path, seeds, features, stride=2, size=None, centres=None, name="pair", feature_gt=None,
               feature_meta=None, epsg=32633):
    """A LABELS + FEATURES pair for segmenter:knn_refine. LABELS: ``seeds`` (gh, gw) repeated over stride x stride
    blocks, cropped to ``size`` (h, w); FEATURES: (C, gh, gw) on the matching grid. ``centres`` (K, C) go to the
    label metadata."""
    from map_segmenter.engine.rasters.labels import write_metadata
    from map_segmenter.engine.rasters.raster_io import scaled_geotransform

    height, width = size or (seeds.shape[0] * stride, seeds.shape[1] * stride)
    pixels = np.repeat(np.repeat(seeds, stride, axis=0), stride, axis=1)[:height, :width].astype(np.uint8)
    labels = write_raster(tmp_path / f"{name}_labels.tif", pixels, GT, nodata=0)
    features_path = write_raster(tmp_path / f"{name}_features.tif", np.asarray(features, np.float32),
                                 feature_gt or scaled_geotransform(GT, stride), epsg=epsg)
    dataset = gdal.Open(features_path, gdal.GA_Update)
    write_metadata(dataset, **(feature_meta if feature_meta is not None else dict(kind="test", stride=stride)))
    dataset = None
    if centres is not None:
        dataset = gdal.Open(labels, gdal.GA_Update)
        write_metadata(dataset, k=len(centres), centres=np.asarray(centres, float).tolist(), method="test")
        dataset = None
    return labels, features_path


def read_array(path, band=None):
    dataset = gdal.Open(str(path))
    return dataset.ReadAsArray() if band is None else dataset.GetRasterBand(band).ReadAsArray()


def crop_real(path, out_path, width, height, xoff=0, yoff=0):
    """A crop of a real raster written as plain GeoTIFF (keeps georeferencing)."""
    gdal.Translate(str(out_path), str(path), srcWin=[xoff, yoff, width, height], creationOptions=["TILED=NO"])
    return str(out_path)


QGIS_PROCESS = "qgis_process.bin"


_ENABLED = []


def qgis_process(*arguments, check=True):
    """Run ``qgis_process.bin`` headless on the test profile, with the plugin enabled there."""
    env = dict(os.environ, QGIS_PLUGINPATH=str(PLUGINS), QT_QPA_PLATFORM="offscreen",
               QGIS_CUSTOM_CONFIG_PATH=str(ROOT / ".build" / "qgis-profile"))
    if not _ENABLED:
        enabled = subprocess.run([QGIS_PROCESS, "plugins", "enable", "map_segmenter"], capture_output=True,
                                 text=True, env=env, timeout=600)
        assert enabled.returncode == 0 or "already enabled" in enabled.stdout + enabled.stderr, enabled.stdout
        _ENABLED.append(True)
    completed = subprocess.run([QGIS_PROCESS, *arguments], capture_output=True, text=True, env=env, timeout=600)
    if check and completed.returncode != 0:
        raise AssertionError(f"qgis_process {arguments} failed:\n{completed.stdout}\n{completed.stderr}")
    return completed


def two_surfaces(path, left, right, seed, width=64):
    """A 16-bit raster: a textured surface of mean ``left`` on the left half and ``right`` on the right."""
    rng = np.random.default_rng(seed)
    values = np.empty((3, 48, width))
    values[:, :, : width // 2], values[:, :, width // 2 :] = left, right
    return write_raster(path, (values + rng.normal(0, 40, values.shape)).astype(np.uint16))


def _die_with_parent():
    """A preexec_fn (Linux) making the child get SIGKILL when the test process dies, even by SIGKILL, so that no
    scheduler or worker outlives an interrupted run; prepared here, so the child only calls prctl (no import, no
    lock: the test process has threads)."""
    import ctypes
    import functools
    import signal

    try:
        return functools.partial(ctypes.CDLL("libc.so.6", use_errno=True).prctl, 1, int(signal.SIGKILL))
    except (OSError, AttributeError):  # not glibc: nothing to prepare
        return None


class DaskProcesses:
    """A real ``dask scheduler`` and ``dask worker`` processes on localhost (the venv's ``dask`` command, one thread
    each, no nanny so that killing a worker's process kills the worker); workers import ``map_segmenter`` from this
    checkout (installed editable in the venv)."""

    def __init__(self, folder, workers=2):
        import json
        import shutil
        import sys
        import time

        self.folder = Path(folder)
        self.dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or "dask"
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", DASK_DISTRIBUTED__WORKER__DAEMON="False",
                        OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                        DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH="10000000")  # tasks_run counts in that log
        scheduler_file = self.folder / "scheduler.json"
        self.logs, self.workers, self.die_with_parent = [], [], _die_with_parent()
        try:
            self.scheduler = self._start([self.dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                          "--no-dashboard", "--scheduler-file", str(scheduler_file)], "scheduler")
            deadline = time.monotonic() + 60
            while not scheduler_file.exists():
                if self.scheduler.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dask scheduler did not start: {self.log_text()}")
                time.sleep(0.1)
            time.sleep(0.1)
            self.address = json.loads(scheduler_file.read_text())["address"]
            for _ in range(workers):
                self.add_worker()
            if workers:
                self.wait_for(workers)
        except BaseException:  # nothing left running when the start fails
            self.close()
            raise

    def _start(self, command, name, env=None):
        log = open(self.folder / f"{name}-{len(self.logs)}.log", "w")
        self.logs.append(log)
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**self.env, **(env or {})},
                                cwd=self.folder, preexec_fn=self.die_with_parent)

    def add_worker(self, env=None):
        """Start one more worker process (``env``: variables to add to its environment)."""
        worker = self._start([self.dask, "worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                              "--host", "127.0.0.1", "--memory-limit", "0"], "worker", env)
        self.workers.append(worker)
        return worker

    def client(self):
        from distributed import Client

        return Client(self.address, timeout="20s", set_as_default=False)

    def wait_for(self, count, timeout=60):
        with self.client() as client:
            client.wait_for_workers(count, timeout=timeout)

    def tasks_run(self, kind=""):
        """{worker address: Map Segmenter tasks (of ``kind``: "scan", "label"...) it has run so far}, from the
        workers' own transition logs."""
        prefix = f"segmenter-{kind}"
        with self.client() as client:  # a lambda travels by value (tests/ is not importable on the workers)
            return client.run(lambda dask_worker: len({entry[0] for entry in dask_worker.state.log
                                                       if str(entry[0]).startswith(prefix)}))

    def log_text(self):
        return "\n".join(Path(log.name).read_text()[-3000:] for log in self.logs)

    def close(self):
        """Stop the workers, then the scheduler (a worker stopping while the scheduler goes away may wait for it:
        whatever is still running after 3 s is killed)."""
        for group in (self.workers, [self.scheduler] if hasattr(self, "scheduler") else []):
            for process in group:
                if process.poll() is None:
                    process.terminate()
            for process in group:
                try:
                    process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for log in self.logs:
            log.close()
