"""Progress reporting and cancellation, decoupled from any GUI.

Engine functions take a ``Progress``; algorithms build one from a ``QgsProcessingFeedback``.
A run is split into weighted stages so the bar moves through every stage of the work.
"""

from .errors import Cancelled
from .memory import release_freed


class Progress:
    def __init__(self, report=None, is_cancelled=None, log=None, warn=None):
        self._report = report or (lambda fraction, message: None)
        self._is_cancelled = is_cancelled or (lambda: False)
        self._log = log or (lambda message: None)
        self._warn = warn or (lambda message: self._log(f"Warning: {message}"))
        self._stages = [("", 1.0)]
        self._stage = 0
        self._done_weight = 0.0
        self._total_weight = 1.0

    def plan(self, stages):
        """Declare the stages of the run as ``[(name, weight), ...]``."""
        self._stages = list(stages)
        self._stage = -1
        self._done_weight = 0.0
        self._total_weight = float(sum(weight for _, weight in self._stages)) or 1.0

    def start(self, name):
        """Enter the stage called ``name`` (declared in ``plan``)."""
        names = [stage_name for stage_name, _ in self._stages]
        index = names.index(name)
        self._done_weight = sum(weight for _, weight in self._stages[:index])
        self._stage = index
        self.update(0.0)

    def update(self, fraction_of_stage, message=None):
        """Report how far the current stage is (0..1) and raise ``Cancelled`` if asked to stop.

        Engines call it after every window: it also gives the memory the windows freed back to the system."""
        self.check()
        release_freed()
        name, weight = self._stages[max(self._stage, 0)]
        fraction = (self._done_weight + weight * min(max(fraction_of_stage, 0.0), 1.0)) / self._total_weight
        self._report(fraction, message or name)

    def check(self):
        if self._is_cancelled():
            raise Cancelled()

    def log(self, message):
        self._log(message)


    def warn(self, message):
        self._warn(message)
