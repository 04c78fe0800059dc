"""Checks of the arguments of the engine's entry points, with the messages the algorithms give.

The algorithms get typed values from QGIS; Python callers may pass anything. Every entry point (segment_kmeans,
segment_cnn, blur_labels, refine_knn, render_labels) runs its arguments through these helpers first, so a wrong
type or value is an ``InputError`` naming the parameter (as the algorithms call it), never a bare TypeError or
ValueError from deep inside, and never a silent run with a meaningless value (MEMORY_MB 0).
"""

import math
import numbers
import os
import re

from . import params
from .errors import InputError
from .outputs import check_path_length


def _shown(value):
    return f"{value!r} ({type(value).__name__})" if not isinstance(value, numbers.Number) else repr(value)


def _bounds(name, value, low, high, above):
    if above is not None and not value > above:
        raise InputError(f"{name} must be greater than {above}; got {value}.")
    if low is not None and high is not None and not low <= value <= high:
        raise InputError(f"{name} must be between {low} and {high}; got {value}.")
    if low is not None and value < low:
        raise InputError(f"{name} must be at least {low}; got {value}.")
    if high is not None and value > high:
        raise InputError(f"{name} must be at most {high}; got {value}.")


def whole(name, value, low=None, high=None):
    """``value`` as an int (whole floats such as 8.0 are accepted), within ``low``..``high``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a whole number; got {_shown(value)}.")
    if not isinstance(value, numbers.Integral):
        if not math.isfinite(value) or not float(value).is_integer():
            raise InputError(f"{name} must be a whole number; got {_shown(value)}.")
    value = int(value)
    _bounds(name, value, low, high, None)
    return value


def number(name, value, low=None, high=None, above=None):
    """``value`` as a finite float within ``low``..``high`` (and greater than ``above``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{name} must be a number; got {_shown(value)}.")
    value = float(value)
    _bounds(name, value, low, high, above)
    return value


def memory(value):
    """MEMORY_MB: a working-memory budget in MB, greater than 0."""
    return number(params.MEMORY_MB, value, above=0)


def choice(name, value, options):
    """One of ``options`` (strings)."""
    if not isinstance(value, str) or value not in options:
        raise InputError(f"{name} must be one of {', '.join(options)}; got {value!r}.")
    return value


def path(name, value, optional=False):
    """A file path or GDAL dataset name as str (``os.PathLike`` accepted); None when optional and not given."""
    if value is None or value == "":
        if optional:
            return None
        raise InputError(f"No {name} was given. Choose a file.")
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise InputError(f"{name} must be a file path; got {_shown(value)}.")
    return check_path_length(name, value)


def bands(value, name=params.BANDS):
    """Band numbers from a list of numbers or a text such as "1,2,3", "1;2;3" or "1 2 3"; None when empty.

    QGIS reads a text value of a multiple band parameter only when it is separated by semicolons: "1,2,3" written
    on the qgis_process command line became band 0."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        parts = [part for part in re.split(r"[,;\s]+", text.strip()) if part]
        numbers_given = []
        for part in parts:
            if not re.fullmatch(r"[+-]?\d+", part):
                raise InputError(
                    f"{name} '{text}': '{part}' is not a band number. Write band numbers separated by commas, "
                    f"e.g. {name}=1,2,3."
                )
            numbers_given.append(int(part))
        return numbers_given or None
    if isinstance(value, numbers.Number):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise InputError(f"{name} must be a list of band numbers such as [1, 2, 3]; got {_shown(value)}.") from None
    result = []
    for item in items:
        result += (bands(item, name) or []) if isinstance(item, str) else [whole(name, item)]
    return result or None


def names(value, name=params.NAMES):
    """Segment names: a list of strings in id order, or None."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(n, str) for n in value):
        raise InputError(f"{name} must be a list of segment names such as ['water', 'trees']; got {_shown(value)}.")
    return list(value) or None
