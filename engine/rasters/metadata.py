"""The SEGMENTER_* metadata of Map Segmenter's rasters, read and written in one place.

Items are JSON values under ``SEGMENTER_<KEY>``. ``FeatureMeta`` is what a feature raster (and the ``features``
item of a label raster) says of its features; ``LabelMeta`` is what a label raster says of itself. Both are parsed
leniently: an item that is missing or malformed reads as unknown (None), and ``raw`` keeps the items as read, so
that a step carries an input's metadata into its output unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from osgeo import gdal

PREFIX = "SEGMENTER_"
MAX_ID = 65535  # the largest id of a label raster (UInt16)
_FEATURE_KEYS = ("kind", "names", "stride", "bands", "input_ranges")


def write_metadata(dataset: gdal.Dataset, **values: Any) -> None:
    """Store values (JSON-encoded) as SEGMENTER_* metadata items of the dataset.

    Parameters
    ----------
    dataset : gdal.Dataset
        A dataset open for writing; its other metadata items are kept.
    **values
        JSON-serialisable values, each stored as ``SEGMENTER_<KEY>`` (the key upper-cased).
    """
    dataset.SetMetadata(
        {**dataset.GetMetadata(), **{PREFIX + key.upper(): json.dumps(value) for key, value in values.items()}}
    )


def read_metadata(dataset: gdal.Dataset) -> dict[str, Any]:
    """The SEGMENTER_* metadata of a dataset as a dict with lower-case keys.

    Parameters
    ----------
    dataset : gdal.Dataset
        Any open dataset.

    Returns
    -------
    dict
        ``{key: value}`` of its SEGMENTER_* items, without the prefix; a value that is not JSON stays the text it
        is. Empty for a raster Map Segmenter did not write.
    """
    result = {}
    for key, value in (dataset.GetMetadata() or {}).items():
        if key.startswith(PREFIX):
            try:
                result[key[len(PREFIX) :].lower()] = json.loads(value)
            except ValueError:
                result[key[len(PREFIX) :].lower()] = value
    return result


def _whole(value, low=1, high=None):
    """``value`` when it is a whole number in low..high, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high):
        return value
    return None


@dataclass
class FeatureMeta:
    """What a feature raster holds: ``kind`` of features (one per method), band ``names``, cell ``stride`` (px),
    the method's own settings (``details``: context and texture weight, or the model and its halo), the input
    ``bands`` and the ``input_ranges`` that mapped them onto 0..255 (None for 8-bit input)."""

    kind: str | None = None
    names: list | None = None
    stride: int | None = None
    details: dict = field(default_factory=dict)
    bands: list | None = None
    input_ranges: list | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)  # the items as read

    def as_dict(self) -> dict[str, Any]:
        """The SEGMENTER_FEATURES value (and the ``features`` item of a label raster), keys in the order written
        since the first version."""
        return dict(kind=self.kind, names=self.names, stride=self.stride, **self.details, bands=self.bands,
                    input_ranges=self.input_ranges)

    @classmethod
    def parse(cls, value: Any) -> FeatureMeta:
        """The ``FeatureMeta`` of a metadata value (a dict as ``as_dict`` gives; anything else: all unknown)."""
        if not isinstance(value, dict):
            return cls()
        return cls(value.get("kind"), value.get("names"), _whole(value.get("stride")),
                   {key: item for key, item in value.items() if key not in _FEATURE_KEYS}, value.get("bands"),
                   value.get("input_ranges"), dict(value))

    @classmethod
    def read(cls, dataset: gdal.Dataset) -> FeatureMeta:
        """The ``FeatureMeta`` of a feature raster (its own SEGMENTER_* items)."""
        return cls.parse(read_metadata(dataset))


@dataclass
class LabelMeta:
    """What a label raster says of itself: K (``k``, 1..65535), segment ``names``, the ``method`` that made it, its
    ``centres`` (as stored) and the ``features`` they were fitted on."""

    k: int | None = None
    names: list | None = None
    method: str | None = None
    centres: Any = None
    features: FeatureMeta = field(default_factory=FeatureMeta)
    raw: dict = field(default_factory=dict, compare=False, repr=False)  # the items as read

    @classmethod
    def parse(cls, items: dict[str, Any]) -> LabelMeta:
        """The ``LabelMeta`` of the SEGMENTER_* items ``read_metadata`` gives (unknown values as None)."""
        return cls(_whole(items.get("k"), 1, MAX_ID), items.get("names"), items.get("method"), items.get("centres"),
                   FeatureMeta.parse(items.get("features")), dict(items))

    @classmethod
    def read(cls, dataset: gdal.Dataset) -> LabelMeta:
        """The ``LabelMeta`` of a label raster."""
        return cls.parse(read_metadata(dataset))

    def names_for(self, segments: int) -> list[str] | None:
        """The segment names when there is one text for each of ``segments`` ids, else None."""
        names = self.names
        if isinstance(names, list) and len(names) == segments and all(isinstance(name, str) for name in names):
            return names
        return None

    @property
    def stride(self) -> int | None:
        """Block size (or model stride) of the segmentation that made the labels, if the metadata says."""
        return self.features.stride or _whole(self.raw.get("stride"))

    def carried(self) -> dict[str, Any]:
        """The items a step that rewrites the labels carries into its output (all but K, names and version,
        which it writes anew)."""
        return {key: value for key, value in self.raw.items() if key not in ("k", "names", "version")}
