"""ONNX Runtime sessions: the model contract, execution-provider fallback, the session cache, and the shipped
model's receptive field, with real ONNX models in the real onnxruntime (CPU only on this machine)."""

import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx_builders import SHIPPED, tiny_model

from map_segmenter.engine.backends import model_contract, onnx_runtime
from map_segmenter.engine.runtime.errors import InputError

from helpers import write_raster


@pytest.fixture(autouse=True)
def fresh_cache():
    onnx_runtime.clear_cache()
    yield
    onnx_runtime.clear_cache()


def load(path, device="auto", threads=0):
    messages = []
    model = onnx_runtime.load_model(str(path), device, threads, log=messages.append)
    return model, messages


def test_shipped_model_follows_the_contract_and_runs_on_cpu():
    model, messages = load(SHIPPED)
    cores = onnx_runtime.cpu_cores()
    info = model.info
    assert (info.name, info.stride, info.embed_dim, info.receptive_field, info.halo) == (
        "student_s4_untrained", 4, 32, 27, 28)
    assert info.tile_size == 512 and info.metadata["training"]["status"] == "untrained"
    assert model.provider == "CPUExecutionProvider" and model.warnings == ()
    assert messages == [f"ONNX Runtime {onnxruntime.__version__}: running student_s4_untrained on "
                        f"CPUExecutionProvider (DEVICE=auto; available: {', '.join(model.available)}) with "
                        f"THREADS 0 (one per core): {cores} network run{'s' if cores > 1 else ''} at a time, one "
                        f"thread each"]
    assert (model.threads, model.runs) == (cores, cores)
    assert model.session.get_session_options().intra_op_num_threads == 1
    assert (load(SHIPPED, threads=3)[0].threads, load(SHIPPED, threads=3)[0].runs) == (3, 3)
    out = model.run(np.zeros((2, 3, 60, 36), np.float32))
    assert out.shape == (2, 32, 15, 9) and out.dtype == np.float32
    assert SHIPPED.stat().st_size < 5e6
    assert "UNTRAINED" in SHIPPED.with_suffix(".md").read_text()
    meta = model_contract.decode_metadata({p.key: p.value for p in onnx.load(str(SHIPPED)).metadata_props})
    assert model_contract.check_metadata(meta) == []


def test_receptive_field_is_exact():
    """A pixel 27 px beyond a cell changes its embedding; one 28 px beyond (the halo) never does."""
    model, _ = load(SHIPPED)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 3, 160, 160)).astype(np.float32)
    cell = 20  # pixels 80..83 in both directions
    reference = model.run(base)[0, :, cell, cell]
    changed = {}
    for name, (y, x) in {"left27": (81, 80 - 27), "right27": (81, 83 + 27), "up27": (80 - 27, 82),
                         "left28": (81, 80 - 28), "right28": (81, 83 + 28), "down28": (83 + 28, 82)}.items():
        probe = base.copy()
        probe[0, :, y, x] += 50.0
        changed[name] = float(np.abs(model.run(probe)[0, :, cell, cell] - reference).max())
    assert changed["left27"] > 1e-3 and changed["up27"] > 1e-3
    assert changed["left28"] == changed["right28"] == changed["down28"] == 0.0
    # on the right, a cell reaches 27 - 3 = 24 px beyond its last pixel: 27 px is already outside
    assert changed["right27"] == 0.0


@pytest.mark.parametrize("build, expected", [
    (dict(input_name="image"), "its inputs are ['image']; the contract needs one input named 'rgb'"),
    (dict(input_shape=(1, 3, 256, 256)), "has a static size 256 x 256; the contract needs dynamic H and W"),
    (dict(input_shape=("N", 3, "H")), "has rank 3"),
    (dict(input_shape=("N", 1, "H", "W")), "has 1 channels; the contract needs 3"),
    (dict(output_name="features"), "its outputs are ['features']; the contract needs one named 'embeddings'"),
    (dict(drop=("receptive_field", "tile_size")), "metadata_props lacks receptive_field, tile_size"),
    (dict(metadata={"stride": 0}), "stride must be an integer >= 1, not 0"),
    (dict(metadata={"input_std": [1, 1]}), "input_std must be a list of 3 numbers"),
])
def test_contract_violations_are_named_precisely(tmp_path, build, expected):
    path = tiny_model(tmp_path / "bad.onnx", **build)
    with pytest.raises(InputError, match="does not follow the Map Segmenter model contract") as error:
        load(path)
    assert expected in str(error.value)


def test_a_model_that_is_not_an_embedding_model_is_refused(tmp_path):
    path = tiny_model(tmp_path / "classifier.onnx", metadata={"model_type": "segmentation"})
    with pytest.raises(InputError, match="is a 'segmentation' model, not an embedding model"):
        load(path)


def test_tiny_valid_model_loads(tmp_path):
    model, _ = load(tiny_model(tmp_path / "tiny.onnx"))
    assert (model.info.stride, model.info.embed_dim, model.info.halo) == (4, 3, 0)
    pixels = np.arange(2 * 3 * 8 * 12, dtype=np.float32).reshape(2, 3, 8, 12)
    assert np.allclose(model.run(pixels), pixels.reshape(2, 3, 2, 4, 3, 4).mean(axis=(3, 5)))


def test_missing_corrupt_and_non_onnx_files(tmp_path):
    with pytest.raises(InputError, match="The model file '.*nowhere.onnx' does not exist"):
        load(tmp_path / "nowhere.onnx")
    with pytest.raises(InputError, match="No model was given"):
        onnx_runtime.load_model("")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(SHIPPED.read_bytes()[:20000])
    with pytest.raises(InputError, match="'.*corrupt.onnx' is not a readable ONNX model \\(.+\\)"):
        load(corrupt)
    raster = write_raster(tmp_path / "raster.onnx", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(InputError, match="is not a readable ONNX model"):
        load(raster)


@pytest.mark.parametrize("device, provider", [("cuda", "CUDAExecutionProvider"), ("coreml", "CoreMLExecutionProvider")])
def test_unavailable_device_falls_back_to_cpu_with_a_warning(device, provider):
    assert provider not in onnxruntime.get_available_providers()  # this machine has no GPU / no macOS
    model, messages = load(SHIPPED, device)
    assert model.provider == "CPUExecutionProvider" and model.device == device
    assert len(messages) == 2
    available = ", ".join(onnxruntime.get_available_providers())
    assert messages[0].startswith(f"Warning: DEVICE={device}: {provider} is not available in this onnxruntime "
                                  f"(available: {available});")
    assert messages[0].endswith("Running on CPU instead.")
    assert messages[1].startswith("ONNX Runtime ") and f"on CPUExecutionProvider (DEVICE={device}; available: " \
        f"{available}) with THREADS 0 (one per core): " in messages[1]
    assert model.run(np.zeros((1, 3, 8, 8), np.float32)).shape == (1, 32, 2, 2)


def test_available_provider_that_fails_to_initialise_falls_back(monkeypatch):
    # Simulated: this machine has no CUDA, so we make onnxruntime *list* CUDA (the only mock); the real
    # InferenceSession then cannot start it and runs on CPU, which load_model must notice and report.
    real = onnxruntime.get_available_providers()
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", *real])
    for device in ("cuda", "auto"):
        onnx_runtime.clear_cache()
        model, messages = load(SHIPPED, device)
        assert model.provider == "CPUExecutionProvider"
        assert messages[0].startswith(f"Warning: DEVICE={device}: CUDAExecutionProvider failed to initialise (")
        assert "Running on CPU instead." in messages[0]
        assert "on CPUExecutionProvider" in messages[1]


def test_sessions_are_cached_per_file_version_device_and_threads(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(SHIPPED.read_bytes())
    first, _ = load(path)
    again, messages = load(path)
    assert again is first and "CPUExecutionProvider" in messages[-1]  # the provider is logged on every run
    single, _ = load(path, threads=1)
    assert single is not first
    assert single.session.get_session_options().intra_op_num_threads == 1
    assert single.session.get_session_options().graph_optimization_level == \
        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert load(path, "cpu")[0] is not first
    os.utime(path, ns=(1, 1))  # a new version of the file
    assert load(path)[0] is not first


def test_bad_device_and_threads(tmp_path):
    with pytest.raises(InputError, match="DEVICE must be one of auto, cuda, coreml, cpu; got 'gpu'"):
        onnx_runtime.load_model(str(SHIPPED), "gpu")
    with pytest.raises(InputError, match="THREADS must be 0"):
        onnx_runtime.load_model(str(SHIPPED), "cpu", -1)


HIDDEN = """
import sys
sys.modules["onnxruntime"] = None  # as if it were not installed
from map_segmenter.engine.runtime.errors import InputError
from map_segmenter.engine.backends import onnx_runtime
from map_segmenter.engine.segmentation import cnn_segmentation
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
segment_kmeans({raster!r}, {out!r}, segments=2)
for device in ("auto", "cuda"):
    try:
        cnn_segmentation.segment_cnn({raster!r}, {out2!r}, {model!r}, device=device)
    except InputError as error:
        print("REFUSED", device, str(error).replace(chr(10), " "))
print("PYTHON", onnx_runtime.python_executable())
"""


def test_without_onnxruntime_kmeans_works_and_cnn_gives_the_install_command(tmp_path):
    rng = np.random.default_rng(0)
    raster = write_raster(tmp_path / "in.tif", rng.integers(0, 255, (3, 32, 32), np.uint8))
    code = HIDDEN.format(raster=raster, out=str(tmp_path / "k.tif"),
                         out2=str(tmp_path / "c.tif"), model=str(SHIPPED))
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    lines = dict(line.split(" ", 1) for line in completed.stdout.splitlines())
    assert lines["PYTHON"] == sys.executable  # the venv's python: the one to install into
    assert (tmp_path / "k.tif").exists() and not (tmp_path / "c.tif").exists()
    refused = [line for line in completed.stdout.splitlines() if line.startswith("REFUSED")]
    assert len(refused) == 2
    assert f"Install it with:     {sys.executable} -m pip install onnxruntime then restart QGIS" in refused[0]
    assert f"{sys.executable} -m pip install onnxruntime-gpu then restart QGIS" in refused[1]


def test_install_command_finds_python_when_sys_executable_is_qgis(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/usr/bin/qgis.bin")
    python = onnx_runtime.python_executable()
    assert os.path.basename(python).startswith("python") and os.path.isfile(python)
    assert onnx_runtime.install_command("cuda") == f"{python} -m pip install onnxruntime-gpu"


def test_install_command_never_names_another_python_on_path(monkeypatch, tmp_path):
    """QGIS's own Python is found by its prefix (a venv's base installation included), never as the first
    ``python3`` on PATH (a pyenv shim or a conda env that QGIS does not load)."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    base = tmp_path / "base"
    (base / "bin").mkdir(parents=True)
    (base / "bin" / version).write_text("")
    shim = tmp_path / "shims"
    shim.mkdir()
    (shim / "python3").write_text("")
    monkeypatch.setenv("PATH", str(shim))
    monkeypatch.setattr(sys, "executable", "/usr/bin/qgis.bin")
    monkeypatch.setattr(sys, "exec_prefix", str(tmp_path / "venv"))
    monkeypatch.setattr(sys, "base_exec_prefix", str(base))
    assert onnx_runtime.python_executable() == str(base / "bin" / version)
    monkeypatch.setattr(sys, "base_exec_prefix", str(tmp_path / "nothing"))
    assert onnx_runtime.python_executable() == version
    assert onnx_runtime.install_command() == f"{version} -m pip install onnxruntime"


@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "CoreMLExecutionProvider"])
def test_gpu_and_coreml_runs_go_through_io_binding(provider):
    """Mocked: this machine has neither CUDA nor CoreML, so the loaded model only *claims* the device provider
    (the one mock); the session underneath is onnxruntime's real CPU session, whose I/O binding is the same API.
    The batch runs in one call through run_with_iobinding, never session.run, the embeddings land in an array of
    the contract's shape, and they equal the CPU path's bit for bit."""
    cpu, _ = load(SHIPPED, "cpu", 1)
    calls = []

    class Recording:
        def __init__(self, session):
            self.session = session

        def io_binding(self):
            calls.append("io_binding")
            return self.session.io_binding()

        def run_with_iobinding(self, binding, options=None):
            calls.append("run_with_iobinding")
            return self.session.run_with_iobinding(binding, options)

        def run(self, *arguments):
            raise AssertionError("a device run must use I/O binding")

    device = onnx_runtime.LoadedModel(Recording(cpu.session), cpu.info, provider, "cuda", cpu.available, (),
                                      cpu.onnxruntime_version)
    batch = np.random.default_rng(0).standard_normal((3, 3, 64, 48)).astype(np.float32)
    out = device.run(batch, cancel_check=lambda: None)
    assert calls == ["io_binding", "run_with_iobinding"]
    assert out.shape == (3, 32, 16, 12) and out.dtype == np.float32 and out.flags.c_contiguous
    assert np.array_equal(out, cpu.run(batch))
