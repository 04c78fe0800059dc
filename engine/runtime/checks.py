"""Checks of the arguments of the engine's entry points, with the messages the algorithms give.

The algorithms get typed values from QGIS; Python callers may pass anything. Every entry point (segment_kmeans,
segment_cnn, blur_labels, refine_knn, render_labels) runs its arguments through these helpers first, so a wrong
type or value is an ``InputError`` naming the parameter (as the algorithms call it), never a bare TypeError or
ValueError from deep inside, and never a silent run with a meaningless value (MEMORY_MB 0).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

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


def whole(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int (whole floats such as 8.0 are accepted), within ``low``..``high``.

    Parameters
    ----------
    name : str
        The parameter's name, as messages give it (``params.SEGMENTS``...).
    value : Any
        An int, or a float with a whole value.
    low, high : int, optional
        Bounds, both included; None = unbounded.

    Returns
    -------
    int
        ``value`` as an int.

    Raises
    ------
    InputError
        ``value`` is not a whole number (a bool, a string, NaN, 2.5...) or lies outside ``low``..``high``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a whole number; got {_shown(value)}.")
    if not isinstance(value, numbers.Integral):
        if not math.isfinite(value) or not float(value).is_integer():
            raise InputError(f"{name} must be a whole number; got {_shown(value)}.")
    value = int(value)
    _bounds(name, value, low, high, None)
    return value


def number(name: str, value: Any, low: float | None = None, high: float | None = None,
           above: float | None = None) -> float:
    """``value`` as a finite float within ``low``..``high`` (and greater than ``above``).

    Parameters
    ----------
    name : str
        The parameter's name, as messages give it (``params.MEMORY_MB``...).
    value : Any
        A real number (int or float, not bool).
    low, high : float, optional
        Bounds, both included; None = unbounded.
    above : float, optional
        A bound the value must exceed (excluded).

    Returns
    -------
    float
        ``value`` as a float.

    Raises
    ------
    InputError
        ``value`` is not a finite real number (a bool, a string, NaN, inf...) or lies outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{name} must be a number; got {_shown(value)}.")
    value = float(value)
    _bounds(name, value, low, high, above)
    return value


def memory(value: Any) -> float:
    """MEMORY_MB: a working-memory budget in MB, greater than 0.

    Returns
    -------
    float
        The budget in MB.

    Raises
    ------
    InputError
        ``value`` is not a number greater than 0.
    """
    return number(params.MEMORY_MB, value, above=0)


def choice(name: str, value: Any, options: Iterable[str]) -> str:
    """One of ``options`` (strings).

    Parameters
    ----------
    name : str
        The parameter's name (``params.METHOD``...).
    value : Any
        The option chosen, as a string.
    options : iterable of str
        The allowed values, in the order messages list them.

    Returns
    -------
    str
        ``value``.

    Raises
    ------
    InputError
        ``value`` is not one of ``options``.
    """
    if not isinstance(value, str) or value not in options:
        raise InputError(f"{name} must be one of {', '.join(options)}; got {value!r}.")
    return value


def path(name: str, value: Any, optional: bool = False) -> str | None:
    """A file path or GDAL dataset name as str (``os.PathLike`` accepted); None when optional and not given.

    Parameters
    ----------
    name : str
        The parameter's name (``params.INPUT``...), as "No INPUT was given" names it.
    value : str, os.PathLike or None
        A path, or None / "" for none.
    optional : bool
        Whether None or "" stands for "not given".

    Returns
    -------
    str or None
        The path as str; None when ``optional`` and not given.

    Raises
    ------
    InputError
        No path although one is required, a value that is not a path, or a path longer than the system takes.
    """
    if value is None or value == "":
        if optional:
            return None
        raise InputError(f"No {name} was given. Choose a file.")
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise InputError(f"{name} must be a file path; got {_shown(value)}.")
    return check_path_length(name, value)


def bands(value: Any, name: str = params.BANDS) -> list[int] | None:
    """Band numbers from a list of numbers or a text such as "1,2,3", "1;2;3" or "1 2 3"; None when empty.

    QGIS reads a text value of a multiple band parameter only when it is separated by semicolons: "1,2,3" written
    on the qgis_process command line became band 0.

    Parameters
    ----------
    value : str, bytes, number, iterable or None
        Band numbers as text, one number, or a list of numbers or texts.
    name : str
        The parameter's name, as messages give it.

    Returns
    -------
    list of int or None
        The band numbers in the order given; None when none are given. (Their range is checked when the raster
        is opened.)

    Raises
    ------
    InputError
        A part that is not a whole number.
    """
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


def names(value: Any, name: str = params.NAMES) -> list[str] | None:
    """Segment names: a list of strings in id order, or None.

    Returns
    -------
    list of str or None
        The names; None when ``value`` is None or empty.

    Raises
    ------
    InputError
        ``value`` is not a list or tuple of strings.
    """
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(n, str) for n in value):
        raise InputError(f"{name} must be a list of segment names such as ['water', 'trees']; got {_shown(value)}.")
    return list(value) or None


def rule(check: Callable[..., Any], name: str | None = None, default: Any = dataclasses.MISSING,
         **options: Any) -> Any:
    """A field of a ``Settings`` dataclass whose value goes through ``check(name, value, **options)`` (or
    ``check(value, **options)`` without a name) when the settings are made by ``Settings.checked``."""
    def apply(value):
        return check(value, **options) if name is None else check(name, value, **options)

    return dataclasses.field(default=default, metadata={"check": apply})


class Settings:
    """The arguments of an entry point as a frozen dataclass whose fields declare their checks (``rule``):
    ``checked(**arguments)`` makes the settings, an ``InputError`` naming the parameter when one is wrong."""

    @classmethod
    def checked(cls, **arguments: Any) -> Settings:
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in arguments:
                check = field.metadata.get("check")
                values[field.name] = check(arguments[field.name]) if check else arguments[field.name]
        return cls(**values)
