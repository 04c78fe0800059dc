"""What every Map Segmenter algorithm shares: engine calls with progress, cancel and readable errors."""

import time

from qgis.core import QgsApplication, QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingParameterDefinition
from qgis.PyQt.QtCore import QCoreApplication, QThread

from ..engine import checks
from ..engine.errors import SegmenterError
from ..engine.progress import Progress

EVENT_INTERVAL = 0.1  # s: how often a run in qgis_process lets a Ctrl+C through


def cancel_check(feedback):
    """``feedback.isCanceled``; in qgis_process, one that also lets a Ctrl+C reach ``feedback``.

    qgis_process (3.22 and later) turns SIGINT into ``feedback.cancel()`` through a Qt socket notifier, that is on
    the next turn of its event loop. While an algorithm runs the loop turns only when the progress bar moves and
    2 s have passed since the last turn, and never with --json: a Ctrl+C took up to 2 s or more, or was ignored.
    Here the main thread's pending events are processed every EVENT_INTERVAL seconds of a check, in qgis_process
    only (inside QGIS, algorithms run in a task thread and QGIS's own Cancel button sets the feedback)."""
    application = QgsApplication.instance()
    if application is None or application.platform() != "qgis_process":
        return feedback.isCanceled
    last = [0.0]

    def is_cancelled():
        now = time.monotonic()
        if now - last[0] >= EVENT_INTERVAL and QThread.currentThread() == application.thread():
            last[0] = now
            QCoreApplication.processEvents()
        return feedback.isCanceled()

    return is_cancelled


class SegmenterAlgorithm(QgsProcessingAlgorithm):
    """Thin base: subclasses declare parameters and pass them to one engine function."""

    GROUP = ("segmentation", "Segmentation")
    ID = TITLE = SUMMARY = HELP = ""  # set by each algorithm

    def name(self):
        return self.ID

    def displayName(self):  # noqa: N802 - QGIS API
        return self.TITLE

    def shortDescription(self):  # noqa: N802 - QGIS API
        return self.SUMMARY

    def shortHelpString(self):  # noqa: N802 - QGIS API
        return self.HELP

    def createInstance(self):  # noqa: N802 - QGIS API
        return type(self)()

    def group(self):
        return self.GROUP[1]

    def groupId(self):  # noqa: N802 - QGIS API
        return self.GROUP[0]

    def helpUrl(self):  # noqa: N802 - QGIS API
        return "https://github.com/map-segmenter/map-segmenter#readme"

    @staticmethod
    def advanced(parameter):
        parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        return parameter

    def raster_path(self, parameters, name, context, required=True):
        """File path of a raster parameter; GDAL (not QGIS) then says precisely what is wrong with it."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is not None:
            if layer.providerType() != "gdal":
                raise QgsProcessingException(
                    f"{name}: layer '{layer.name()}' is not a file GDAL can read ({layer.providerType()}). "
                    f"Save it as a GeoTIFF first (Raster > Conversion > Translate)."
                )
            return layer.source().split("|")[0]
        value = self.parameterAsString(parameters, name, context)
        if not value and required:
            raise QgsProcessingException(f"{name}: no raster given.")
        return value or None

    def band_numbers(self, parameters, name, context, feedback=None):
        """Band numbers of a multiple band parameter, logged. QGIS reads a text value only when it is separated by
        semicolons ("1,2,3" from the qgis_process command line became band 0): text is parsed here."""
        value = parameters.get(name)
        if isinstance(value, str):
            try:
                bands = checks.bands(value, name)
            except SegmenterError as error:
                raise QgsProcessingException(str(error)) from None
        else:
            bands = self.parameterAsInts(parameters, name, context) or None
        if bands and feedback is not None:
            feedback.pushInfo(f"{name}: band{'s' if len(bands) > 1 else ''} {', '.join(map(str, bands))}"
                              + (f" (from '{value}')" if isinstance(value, str) else ""))
        return bands

    def segmentation_arguments(self, parameters, context, feedback=None):
        """The engine arguments kmeans and cnn take alike (input, bands, K, seed, outputs, memory, reference)."""
        return dict(
            input_path=self.raster_path(parameters, "INPUT", context),
            output_path=self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            segments=self.parameterAsInt(parameters, "SEGMENTS", context),
            seed=self.parameterAsInt(parameters, "SEED", context),
            bands=self.band_numbers(parameters, "BANDS", context, feedback),
            features_path=self.parameterAsOutputLayer(parameters, "FEATURES", context) or None,
            memory_mb=self.parameterAsInt(parameters, "MEMORY_MB", context),
            reference_path=self.raster_path(parameters, "REFERENCE", context, required=False),
        )

    @staticmethod
    def segmentation_outputs(result, **extra):
        outputs = {"OUTPUT": result.output, "SEGMENTS": result.present, **extra}
        if result.features:
            outputs["FEATURES"] = result.features
        return outputs

    @staticmethod
    def run_engine(function, feedback, **arguments):
        progress = Progress(
            report=lambda fraction, message: (feedback.setProgress(100.0 * fraction), feedback.setProgressText(message)),
            is_cancelled=cancel_check(feedback),
            log=feedback.pushInfo,
            warn=feedback.pushWarning,
        )
        try:
            return function(progress=progress, **arguments)
        except SegmenterError as error:
            raise QgsProcessingException(str(error)) from None
