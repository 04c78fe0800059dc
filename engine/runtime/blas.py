"""One BLAS thread for small matrix products: the K-Means fit's products (a sample of 50,000 x C points against K
centres) are too small to share between threads, and on 2 cores OpenBLAS's second thread made the fit 2x slower
(measured: 0.34 s with one thread, 0.7-0.9 s with two, on 50,000 x 6 points, K = 8, under load).

OpenBLAS splits a product's rows and columns between threads, never the sums inside one element, so the numbers
are the same whatever the thread count (checked on the fit's centres). Best effort: OpenBLAS is found among the
libraries this process loaded (numpy's wheels, a system OpenBLAS); with another BLAS nothing changes.
"""

import ctypes
import glob
import os
import threading
from contextlib import contextmanager

_SUFFIXES = ("", "64_")
_PREFIXES = ("openblas", "scipy_openblas")
_lock = threading.Lock()
_state = {"users": 0, "saved": []}
_functions = []


def _candidates():
    """Paths of OpenBLAS libraries this process may have loaded."""
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            paths = [line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line]
    except OSError:
        pass
    try:
        import numpy

        base = os.path.dirname(os.path.dirname(numpy.__file__))
        for folder in ("numpy.libs", os.path.join("numpy", ".libs"), os.path.join("numpy", ".dylibs")):
            paths += glob.glob(os.path.join(base, folder, "*openblas*"))
    except ImportError:
        pass
    return list(dict.fromkeys(os.path.realpath(path) for path in paths))


def _find():
    """[(get_num_threads, set_num_threads)] of every OpenBLAS this process loaded: numpy's, and others that came
    with other libraries (GDAL's dependencies bring a system OpenBLAS), each with its own threads."""
    if not _functions:
        found = []
        for path in _candidates():
            try:
                library = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix in _PREFIXES:
                for suffix in _SUFFIXES:
                    getter = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
                    setter = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
                    if getter is not None and setter is not None:
                        getter.restype, setter.argtypes = ctypes.c_int, [ctypes.c_int]
                        found.append((getter, setter))
        _functions.append(found)
    return _functions[0]


@contextmanager
def single_thread():
    """Run the block with OpenBLAS on one thread (restored after the last nested or concurrent block ends)."""
    functions = _find()
    with _lock:
        if _state["users"] == 0:
            _state["saved"] = [getter() for getter, _ in functions]
            for _, setter in functions:
                setter(1)
        _state["users"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["users"] -= 1
            if _state["users"] == 0:
                for (_, setter), threads in zip(functions, _state["saved"]):
                    setter(threads)
