"""Typed exceptions with messages a user can act on."""


class SegmenterError(Exception):
    """Base class: anything the engine refuses or fails to do, with a plain message."""


class InputError(SegmenterError):
    """The input raster or a parameter cannot be used as given."""


class OutputError(SegmenterError):
    """The output cannot be written where requested."""


class Cancelled(SegmenterError):
    """The user cancelled; nothing was written at the destination."""

    def __init__(self, message="Cancelled by the user; no output was written."):
        super().__init__(message)


class ClusterError(SegmenterError):
    """The Dask cluster asked for (SCHEDULER) cannot be reached, has no workers, runs another engine, or failed."""
