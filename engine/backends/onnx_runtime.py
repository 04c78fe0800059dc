"""ONNX Runtime for the CNN path: optional import, execution-provider choice, model-contract checks, cache.

onnxruntime is optional: it is imported only when a model is loaded, and when it is missing the user is told
the exact command that installs it for the Python QGIS runs. Nothing is installed automatically.

DEVICE: ``auto`` takes CUDA, then CoreML, then CPU among ``onnxruntime.get_available_providers()``; an
explicit ``cuda`` or ``coreml`` that is unavailable or fails to initialise falls back to CPU with a warning
that gives the reason and the providers available. The provider actually used is always logged.
"""

import hashlib
import os
import sys
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..rasters.windows import cells
from ..runtime.errors import Cancelled, InputError
from . import model_contract

DEVICES = ("auto", "cuda", "coreml", "cpu")
PROVIDERS = {"cuda": "CUDAExecutionProvider", "coreml": "CoreMLExecutionProvider", "cpu": "CPUExecutionProvider"}
AUTO_ORDER = ("cuda", "coreml")
CACHE_SIZE = 4

_cache = OrderedDict()
_cache_lock = threading.Lock()


def python_executable():
    """The Python interpreter QGIS runs (inside QGIS ``sys.executable`` is often the QGIS binary itself).

    Looked for beside the running interpreter's own prefix (a venv's, then the base installation's), never on
    PATH: the first ``python3`` there may be another Python (a pyenv shim, a conda env) that QGIS does not load.
    """
    name = os.path.basename(sys.executable or "").lower()
    if name.startswith("python"):
        return sys.executable
    versioned = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for prefix in dict.fromkeys((sys.exec_prefix, getattr(sys, "base_exec_prefix", sys.exec_prefix))):
        for candidate in (os.path.join(prefix, "bin", versioned), os.path.join(prefix, "bin", "python3"),
                          os.path.join(prefix, "python.exe"), os.path.join(prefix, "python3.exe")):
            if os.path.isfile(candidate):
                return candidate
    return versioned  # names the exact version QGIS runs, so a different Python on PATH is not taken for it


def install_command(device="auto"):
    """The exact command that installs onnxruntime for this Python."""
    package = "onnxruntime-gpu" if device == "cuda" else "onnxruntime"
    python = python_executable()
    quoted = f'"{python}"' if " " in python else python
    return f"{quoted} -m pip install {package}"


def install_message(device="auto"):
    return (
        "segmenter:cnn needs the Python package onnxruntime, which is not installed for the Python that QGIS runs "
        f"({python_executable()}). Install it with:\n    {install_command(device)}\n"
        "then restart QGIS. Use onnxruntime-gpu instead for NVIDIA GPUs (DEVICE=cuda); the standard macOS "
        "wheel already includes CoreML. On Linux distributions that protect the system Python, add --user "
        "(and, if pip refuses, --break-system-packages) or run QGIS from a virtual environment made with "
        "--system-site-packages. Every other Map Segmenter algorithm works without it."
    )


def import_onnxruntime(device="auto"):
    """The onnxruntime module, or an ``InputError`` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise InputError(install_message(device)) from None
    return onnxruntime


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs from a contract-conforming model (see model_contract.py)."""

    path: str
    name: str
    sha256: str
    stride: int
    embed_dim: int
    receptive_field: int
    tile_size: int
    input_scale: float
    input_mean: tuple
    input_std: tuple
    metadata: dict = field(compare=False, repr=False)

    @property
    def global_context(self):
        """True when embeddings depend on the whole tile (ViTs): tiles are blended, not cut exactly."""
        return self.metadata.get("global_context") is True

    @property
    def halo(self):
        """Pixels of context on every side of a tile's core: the receptive field rounded up to the stride (for a
        global-context model, the overlap its tiles are blended over)."""
        return cells(self.receptive_field, self.stride) * self.stride

    def summary(self):
        """JSON-able description stored in output metadata (and compared by REFERENCE)."""
        return dict(name=self.name, version=self.metadata.get("version"), sha256=self.sha256, stride=self.stride,
                    embed_dim=self.embed_dim, receptive_field=self.receptive_field,
                    training=self.metadata.get("training"))


@dataclass
class LoadedModel:
    session: object
    info: ModelInfo
    provider: str
    device: str
    available: tuple
    warnings: tuple
    onnxruntime_version: str
    requested_threads: int = 0  # THREADS as given (0 = one per core)
    runs: int = 1  # networks to run at a time (on the CPU, each on one thread of its own)

    @property
    def threads(self):
        """CPU threads the network runs on: ``runs`` single-threaded runs on the CPU; on a GPU, the session's
        intra-op threads for the operations left to the CPU (0 = ONNX Runtime's default)."""
        if self.provider == PROVIDERS["cpu"]:
            return self.runs
        return int(self.session.get_session_options().intra_op_num_threads)

    def threads_text(self):
        given = "THREADS 0 (one per core)" if not self.requested_threads else f"THREADS {self.requested_threads}"
        if self.provider != PROVIDERS["cpu"]:
            return given
        return f"{given}: {self.runs} network run{'s' if self.runs != 1 else ''} at a time, one thread each"

    def _run(self, batch, options=None):
        """The session's output for ``batch``: on the CPU one tile at a time (a batch gains nothing there and its
        activations fall out of the caches: 31.5 MPix per CPU second one 512 px tile at a time, 28.5 four at a
        time), elsewhere in one call. Each tile's embeddings are the same either way."""
        if self.provider != PROVIDERS["cpu"]:
            return self._run_bound(batch, options)
        if len(batch) == 1:
            return self.session.run([model_contract.OUTPUT_NAME], {model_contract.INPUT_NAME: batch}, options)[0]
        return np.concatenate([
            self.session.run([model_contract.OUTPUT_NAME], {model_contract.INPUT_NAME: batch[i : i + 1]}, options)[0]
            for i in range(len(batch))])

    def _run_bound(self, batch, options=None):
        """A GPU (CUDA) or CoreML run through I/O binding: the batch bound as it is in host memory (ONNX Runtime
        copies it to the device once, no intermediate copy), the embeddings written by the device straight into a
        float32 array allocated here of the shape the contract gives (N, C, H/stride, W/stride), instead of an
        output ONNX Runtime allocates and Python then converts."""
        rows, cols = batch.shape[2] // self.info.stride, batch.shape[3] // self.info.stride
        output = np.empty((batch.shape[0], self.info.embed_dim, rows, cols), np.float32)
        binding = self.session.io_binding()
        binding.bind_cpu_input(model_contract.INPUT_NAME, np.ascontiguousarray(batch, np.float32))
        binding.bind_output(model_contract.OUTPUT_NAME, "cpu", 0, np.float32, list(output.shape),
                            output.ctypes.data)
        self.session.run_with_iobinding(binding, options)
        return output

    def run(self, batch, cancel_check=None):
        """Embeddings (N, C, H/stride, W/stride) float32 of a normalised batch (N, 3, H, W) float32.

        ``cancel_check`` (raising ``Cancelled``) is polled from a watchdog thread while the network runs, so a
        cancel stops a long batch within about 0.1 s instead of at its end.
        """
        if cancel_check is None:
            return self._run(batch)
        ort = import_onnxruntime()
        options = ort.RunOptions()
        stop, cancelled = threading.Event(), threading.Event()

        def watch():
            while not stop.wait(0.1):
                try:
                    cancel_check()
                except Cancelled:
                    cancelled.set()
                    options.terminate = True
                    return

        watchdog = threading.Thread(target=watch, daemon=True)
        watchdog.start()
        try:
            return self._run(batch, options)
        except Exception:
            if cancelled.is_set():
                raise Cancelled() from None
            raise
        finally:
            stop.set()
            watchdog.join()

    def log(self, log, warn=None):
        for warning in self.warnings:
            (warn or (lambda message: log(f"Warning: {message}")))(warning)
        log(f"ONNX Runtime {self.onnxruntime_version}: running {self.info.name} on {self.provider} "
            f"(DEVICE={self.device}; available: {', '.join(self.available)}) with {self.threads_text()}")


def load_model(path, device="auto", threads=0, log=None, warn=None):
    """Load and check an embedding model; sessions are cached per (file, mtime, size, device, threads).

    ``log`` receives the provider actually used and any fallback warning, also when the session is cached.
    """
    if device not in DEVICES:
        raise InputError(f"DEVICE must be one of {', '.join(DEVICES)}; got {device!r}.")
    if threads < 0:
        raise InputError(f"THREADS must be 0 (onnxruntime's default) or more; got {threads}.")
    if not path:
        raise InputError("No model was given. Choose a MODEL or a .onnx file with MODEL_PATH.")
    if not os.path.isfile(path):
        raise InputError(f"The model file '{path}' does not exist. Choose a .onnx model (MODEL or MODEL_PATH).")
    ort = import_onnxruntime(device)
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size, device, int(threads))
    with _cache_lock:
        model = _cache.get(key)
        if model is not None:
            _cache.move_to_end(key)
    if model is None:
        model = _load(ort, path, device, threads)
        with _cache_lock:
            _cache[key] = model
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    if log is not None:
        model.log(log, warn)
    return model


def clear_cache():
    with _cache_lock:
        _cache.clear()


def cpu_cores():
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _session_options(ort, threads):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(threads)
    # Threads that wait for work sleep instead of spinning: the engine prepares tiles and writes embeddings on
    # other threads while the network runs, and a spinning thread takes their core (measured on 2 cores: 1 CPU
    # second of 5 spent spinning on 25 MPix, wall time -25 %). The numbers computed do not change.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: fallbacks are reported by us, in plain words
    return options


def _choose(ort, device):
    """(device to try first, warnings) from the request and the providers this onnxruntime offers."""
    available = list(ort.get_available_providers())
    if device == "auto":
        return next((name for name in AUTO_ORDER if PROVIDERS[name] in available), "cpu"), []
    if device == "cpu" or PROVIDERS[device] in available:
        return device, []
    hint = ("install onnxruntime-gpu (with CUDA and cuDNN) instead of onnxruntime" if device == "cuda"
            else "CoreML exists only in onnxruntime for macOS")
    return "cpu", [
        f"DEVICE={device}: {PROVIDERS[device]} is not available in this onnxruntime (available: "
        f"{', '.join(available)}); {hint}. Running on CPU instead."
    ]


def _load(ort, path, device, threads):
    """The session for ``device``. On the CPU the engine runs ``threads`` (0: one per core) networks at a time on
    separate tiles, each session run on one thread; on a GPU one run at a time, ``threads`` for ONNX Runtime's
    CPU side."""
    chosen, notes = _choose(ort, device)
    options = _session_options(ort, threads)
    session = None
    if chosen != "cpu":
        provider = PROVIDERS[chosen]
        try:
            with warnings.catch_warnings():  # onnxruntime's own fallback warning: we give a plainer one below
                warnings.simplefilter("ignore")
                session = ort.InferenceSession(path, options, providers=[provider, PROVIDERS["cpu"]])
        except Exception as error:  # a provider that fails to start; a broken model fails again on CPU below
            reason = _first_line(error)
        else:
            if session.get_providers()[0] != provider:
                reason = "onnxruntime did not register it for this session (missing drivers or libraries?)"
            else:
                reason = None
        if reason is not None:
            session = None
            notes.append(
                f"DEVICE={device}: {provider} failed to initialise ({reason}); available providers: "
                f"{', '.join(ort.get_available_providers())}. Running on CPU instead."
            )
            chosen = "cpu"
    if session is None:
        try:
            session = ort.InferenceSession(path, _session_options(ort, 1), providers=[PROVIDERS["cpu"]])
        except Exception as error:
            raise InputError(
                f"The model '{path}' is not a readable ONNX model ({_first_line(error)}). Choose a .onnx file "
                f"exported for Map Segmenter (see onnx_models/)."
            ) from None
    info = check_contract(session, path)
    check_output(session, info)
    provider = session.get_providers()[0]
    runs = (int(threads) or cpu_cores()) if provider == PROVIDERS["cpu"] else 1
    return LoadedModel(session, info, provider, device, tuple(ort.get_available_providers()), tuple(notes),
                       ort.__version__, int(threads), runs)


def _first_line(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def check_contract(session, path):
    """The model's ``ModelInfo`` if its inputs, outputs and metadata follow model_contract.py; else InputError."""
    name = os.path.basename(path)
    meta = model_contract.decode_metadata(session.get_modelmeta().custom_metadata_map)
    model_type = meta.get("model_type")
    if model_type is not None and model_type != model_contract.MODEL_TYPE:
        raise InputError(
            f"The model '{name}' is a {model_type!r} model, not an embedding model (model_type "
            f"{model_contract.MODEL_TYPE!r}). segmenter:cnn needs a model that outputs per-pixel embeddings."
        )
    problems = []
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or inputs[0].name != model_contract.INPUT_NAME:
        problems.append(f"its inputs are {[i.name for i in inputs]}; the contract needs one input named "
                        f"{model_contract.INPUT_NAME!r}")
    else:
        shape = inputs[0].shape
        if inputs[0].type != "tensor(float)":
            problems.append(f"input {model_contract.INPUT_NAME!r} is {inputs[0].type}, not tensor(float)")
        if len(shape) != 4:
            problems.append(f"input {model_contract.INPUT_NAME!r} has rank {len(shape)} (shape {shape}); the "
                            f"contract needs rank 4 [N, 3, H, W]")
        else:
            if shape[1] != 3:
                problems.append(f"input {model_contract.INPUT_NAME!r} has {shape[1]} channels; the contract needs 3")
            static = [axis for axis, size in zip("HW", shape[2:]) if isinstance(size, int)]
            if static:
                problems.append(f"input {model_contract.INPUT_NAME!r} has a static size {shape[2]} x {shape[3]}; "
                                f"the contract needs dynamic H and W so tiles of any size can be run")
    output = next((o for o in outputs if o.name == model_contract.OUTPUT_NAME), None)
    if output is None:
        problems.append(f"its outputs are {[o.name for o in outputs]}; the contract needs one named "
                        f"{model_contract.OUTPUT_NAME!r}")
    elif len(output.shape) != 4:
        problems.append(f"output {model_contract.OUTPUT_NAME!r} has rank {len(output.shape)}; the contract needs "
                        f"rank 4 [N, C, H/stride, W/stride]")
    problems += model_contract.check_metadata(meta)
    if not problems and output is not None and isinstance(output.shape[1], int) \
            and output.shape[1] != meta["embed_dim"]:
        problems.append(f"output {model_contract.OUTPUT_NAME!r} has {output.shape[1]} channels but embed_dim "
                        f"is {meta['embed_dim']}")
    if problems:
        raise InputError(
            f"The model '{name}' does not follow the Map Segmenter model contract: {'; '.join(problems)}. "
            f"Export it with training/export_untrained.py or see engine/backends/model_contract.py."
        )
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    return ModelInfo(
        path=path, name=str(meta.get("name") or os.path.splitext(name)[0]), sha256=digest,
        stride=meta["stride"], embed_dim=meta["embed_dim"], receptive_field=meta["receptive_field"],
        tile_size=meta["tile_size"], input_scale=float(meta["input_scale"]),
        input_mean=tuple(float(v) for v in meta["input_mean"]), input_std=tuple(float(v) for v in meta["input_std"]),
        metadata=meta,
    )


PROBE_CELLS = 4  # the probe tile is this many declared strides on a side, and at least PROBE_PIXELS


PROBE_PIXELS = 64


def probe_size(info):
    """The side of the probe tile: a multiple of the declared stride."""
    return info.stride * max(PROBE_CELLS, cells(PROBE_PIXELS, info.stride))


def check_output(session, info):
    """Run the network once on a probe tile (mid-grey: zeros after normalisation) of ``probe_size`` px and check
    what it computes against what its metadata declares, before any run: the output grid (its real stride), the
    channels (embed_dim) and that every value is finite. ``InputError`` naming the model and the difference."""
    size = probe_size(info)
    name = os.path.basename(info.path)
    try:
        output = session.run([model_contract.OUTPUT_NAME],
                             {model_contract.INPUT_NAME: np.zeros((1, 3, size, size), np.float32)})[0]
    except Exception as error:
        raise InputError(f"The model '{name}' could not run on a {size} x {size} px probe tile "
                         f"({_first_line(error)}). Choose a .onnx file exported for Map Segmenter.") from None
    output = np.asarray(output)
    cells_expected = size // info.stride
    problems = []
    if output.ndim != 4 or output.shape[0] != 1:
        problems.append(f"its output has shape {list(output.shape)} for one tile; the contract needs "
                        f"[1, C, H/stride, W/stride]")
    else:
        rows, cols = output.shape[2:]
        if (rows, cols) != (cells_expected, cells_expected):
            real = (f"its real stride is {size // rows}" if rows and cols == rows and size % rows == 0
                    else "that is no whole stride")
            problems.append(f"its metadata declare stride {info.stride}, but the network computes a {rows} x {cols} "
                            f"grid from a {size} x {size} px probe tile, not {cells_expected} x {cells_expected}: "
                            f"{real}")
        if output.shape[1] != info.embed_dim:
            problems.append(f"its metadata declare embed_dim {info.embed_dim}, but the network outputs "
                            f"{output.shape[1]} channels")
        bad = int(np.count_nonzero(~np.isfinite(output)))
        if bad:
            problems.append(f"{bad} of the {output.size} values it computes for a mid-grey probe tile are not "
                            f"finite (NaN or infinity)")
    if problems:
        raise InputError(f"The model '{name}' does not compute what its metadata declare: {'; '.join(problems)}. "
                         f"Fix the model's metadata (training/export_backbone.py writes them from the network) or "
                         f"choose another MODEL.")


def normaliser(info):
    """(scale, offset) float32 arrays of shape (3, 1, 1): normalised = pixels * scale + offset."""
    std = np.array(info.input_std, np.float64)
    scale = (info.input_scale / std).astype(np.float32)[:, None, None]
    offset = (-np.array(info.input_mean, np.float64) / std).astype(np.float32)[:, None, None]
    return scale, offset
