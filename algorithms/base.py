"""What every Map Segmenter algorithm shares: translated texts, the provider's icon, the parameters kmeans and cnn
declare alike, engine calls with progress, cancel and readable errors, and styled label outputs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication, QThread
from qgis.PyQt.QtGui import QIcon

from ..engine.rasters.region import Region
from ..engine.runtime import checks, params
from ..engine.runtime.errors import SegmenterError
from ..engine.runtime.progress import Progress
from ..engine.segmentation.hierarchy import K_MAX, K_MIN
from .map_input import is_gdal_file, native_pixel_size, polygons_file, render_layer
from .paths import layer_path
from .qgis_compat import ProcessingNumberParameterType, ProcessingParameterFlag, ProcessingSourceType
from .styling import style_when_loaded

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icon.svg")
SEGMENTATION = "segmentation"
POSTPROCESSING = "postprocessing"


def translate(context, text):
    return QCoreApplication.translate(context, text)


class StageLog:
    """Adapts engine progress to a QgsProcessingFeedback with one log line per event: each stage's name once,
    not again with every "(n/N windows)" refinement of it (those move the bar)."""

    def __init__(self, feedback):
        self.feedback = feedback
        self.stage = None

    def report(self, fraction, message):
        self.feedback.setProgress(100.0 * fraction)
        if message and message != self.stage and not message.startswith(f"{self.stage} ("):
            self.stage = message.split(" (", 1)[0]
            self.feedback.setProgressText(self.stage)

    def progress(self):
        return Progress(report=self.report, is_cancelled=cancel_check(self.feedback), log=self.feedback.pushInfo,
                        warn=self.feedback.pushWarning)

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

    GROUP = SEGMENTATION
    ID = ""  # set by each algorithm
    ENGINE = None  # the engine entry point of an algorithm built on a skeleton below, as staticmethod(...)

    def tr(self, text):
        """``text`` in the user's language: looked up under this class's name (the context pylupdate5 gives
        strings in a class body), then under its bases' (shared texts live in the base class)."""
        for klass in type(self).__mro__:
            translated = translate(klass.__name__, text)
            if translated != text:
                return translated
        return text

    def group_name(self, group_id):
        return {SEGMENTATION: self.tr("Segmentation"), POSTPROCESSING: self.tr("Post-processing")}[group_id]

    def name(self):
        return self.ID

    def texts(self):
        """(display name, short description, help) in the user's language: each algorithm's own words."""
        raise NotImplementedError

    def displayName(self):  # noqa: N802 - QGIS API
        return self.texts()[0]

    def shortDescription(self):  # noqa: N802 - QGIS API
        return self.texts()[1]

    def shortHelpString(self):  # noqa: N802 - QGIS API
        return self.texts()[2]

    def createInstance(self):  # noqa: N802 - QGIS API
        return type(self)()

    def group(self):
        return self.group_name(self.GROUP)

    def groupId(self):  # noqa: N802 - QGIS API
        return self.GROUP

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):  # noqa: N802 - QGIS API
        return ICON

    def helpUrl(self):  # noqa: N802 - QGIS API
        return "https://github.com/map-segmenter/map-segmenter#readme"

    @staticmethod
    def advanced(parameter: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
        parameter.setFlags(parameter.flags() | ProcessingParameterFlag.Advanced)
        return parameter

    def add(self, parameter: QgsProcessingParameterDefinition, help_text: str | None = None,
            advanced: bool = False) -> QgsProcessingParameterDefinition:
        """Add ``parameter`` with the help QGIS shows as its tooltip.

        Parameters
        ----------
        parameter : QgsProcessingParameterDefinition
            The parameter, named by a constant of ``engine/runtime/params.py``.
        help_text : str, optional
            Its tooltip, translated.
        advanced : bool
            Whether the dialog shows it under Advanced Parameters.

        Returns
        -------
        QgsProcessingParameterDefinition
            ``parameter``.
        """
        if help_text:
            parameter.setHelp(help_text)
        self.addParameter(self.advanced(parameter) if advanced else parameter)
        return parameter

    def integer(self, name: str, label: str, default: int | None, minimum: int, maximum: int | None = None,
                help_text: str | None = None, advanced: bool = False,
                optional: bool = False) -> QgsProcessingParameterDefinition:
        """Add an integer parameter ``name`` of ``minimum``..``maximum`` (default: the largest int QGIS takes)."""
        kind = ProcessingNumberParameterType.Integer
        parameter = QgsProcessingParameterNumber(name, label, kind, default, optional, minimum,
                                                 maximum if maximum is not None else 2**31 - 1)
        return self.add(parameter, help_text, advanced)

    def decimal(self, name: str, label: str, default: float, minimum: float, maximum: float,
                help_text: str | None = None, advanced: bool = False) -> QgsProcessingParameterDefinition:
        """Add a required decimal parameter ``name`` of ``minimum``..``maximum``."""
        kind = ProcessingNumberParameterType.Double
        return self.add(QgsProcessingParameterNumber(name, label, kind, default, False, minimum, maximum),
                        help_text, advanced)

    def add_segments_input(self, help_text: str, name: str = params.INPUT) -> QgsProcessingParameterDefinition:
        """The label raster a post-processing step reads, "Segments" in every dialog."""
        return self.add(QgsProcessingParameterRasterLayer(name, self.tr("Segments")), help_text)

    # -- the hooks of the skeletons below (SegmentationAlgorithm, LabelStepAlgorithm) ------------------------------

    def add_method_settings(self):
        """The algorithm's own parameters, where its skeleton's order puts them."""

    def add_method_outputs(self):
        """The algorithm's own outputs, after its skeleton's."""

    def method_arguments(self, parameters, context):
        """The engine arguments of the algorithm's own parameters."""
        return {}

    def method_outputs(self, result):
        """Outputs of the algorithm's own, from the engine's result."""
        return {}

    # -- the parameters segmenter:kmeans and segmenter:cnn share ------------------------------------------------

    def add_input_and_bands(self):
        self.add(QgsProcessingParameterMapLayer(params.INPUT, self.tr("Input layer")),
                 self.tr("The layer to segment: a raster GDAL reads (GeoTIFF, JPEG, VRT...; 8-bit, 16-bit or float), "
                         "or any other map layer (XYZ or WMS basemap, vector layer...), which is drawn with its "
                         "style over Area to segment at Pixel size first. Nodata and transparent pixels stay "
                         "nodata."))
        self.add(QgsProcessingParameterBand(params.BANDS, self.tr("Bands (default: first three)"), None, params.INPUT,
                                            True, True),
                 self.tr("Bands to segment. Empty: the first three bands that are not alpha. Needed for a "
                         "grey-scale raster (choose band 1)."))

    def add_segments(self):
        self.integer(params.SEGMENTS, self.tr("Number of segments (K; 0 = automatic)"), 8, 0, 254,
                     self.tr("How many kinds of region to find (2-254), or 0 to let the raster choose K between "
                             "Smallest K and Largest K: the log shows the criterion for every K and the K chosen."))

    def add_k_range(self):
        self.integer(params.K_MIN, self.tr("Smallest K (automatic)"), K_MIN, 2, 254,
                     self.tr("With Number of segments 0: the smallest K the automatic choice considers."),
                     advanced=True)
        self.integer(params.K_MAX, self.tr("Largest K (automatic)"), K_MAX, 2, 254,
                     self.tr("With Number of segments 0: the largest K the automatic choice considers. The result "
                             "can be cut to fewer segments later with Merge segments."), advanced=True)

    def add_seed_and_reference(self):
        self.integer(params.SEED, self.tr("Random seed"), 0, 0,
                     help_text=self.tr("Seed of the sample and of the initialisation: the same seed gives the same "
                                       "result."))
        self.add(QgsProcessingParameterRasterLayer(params.REFERENCE, self.tr("Reference segmentation (reuse its centres)"),
                                                   optional=True),
                 self.tr("Optional: a segmentation made earlier by this algorithm. Its segment centres are reused "
                         "instead of fitting new ones, so several rasters get the same segment for the same kind "
                         "of surface."))

    def add_region(self):
        self.add(QgsProcessingParameterExtent(params.EXTENT, self.tr("Area to segment"), optional=True),
                 self.tr("Optional: segment only this area. A raster file is cut on its own pixel grid, so the "
                         "result lines up pixel for pixel with a run over the whole raster. Required for web "
                         "layers (a tile service covers the world)."))
        self.add(QgsProcessingParameterNumber(params.PIXEL_SIZE, self.tr("Pixel size for drawn layers (0 = native)"),
                                              ProcessingNumberParameterType.Double, 0.0, False, 0.0),
                 self.tr("For layers that are drawn first (web and vector layers): the size of a pixel in the "
                         "layer's CRS units. 0 = the layer's own finest resolution (a tile service's deepest "
                         "zoom); required for vector layers. Raster files keep their own pixels."))
        self.add(QgsProcessingParameterFeatureSource(params.MASK, self.tr("Mask polygons"),
                                                     [ProcessingSourceType.VectorPolygon], optional=True),
                 self.tr("Optional: only pixels inside these polygons are segmented; the others are nodata in every "
                         "output and take no part in the fit."))

    def add_memory(self) -> None:
        """MEMORY_MB (advanced): the working-memory budget every step takes."""
        self.integer(params.MEMORY_MB, self.tr("Memory budget (MB)"), 256, 1, 1_000_000,
                     self.tr("Working memory to use. The raster is processed in windows that fit it; the result "
                             "does not depend on it."), advanced=True)

    def add_scheduler(self) -> QgsProcessingParameterDefinition:
        """SCHEDULER (advanced): the optional Dask scheduler address; read with ``scheduler``."""
        parameter = QgsProcessingParameterString(params.SCHEDULER, self.tr("Dask scheduler (empty = this computer)"),
                                                 optional=True)
        return self.add(parameter, self.tr(
            "Optional: the address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786, to process the windows on "
            "its workers; empty runs here, as always. The result is the same. The workers must read the input "
            "under the same path (a shared folder, or /vsis3/...) and run the same Map Segmenter version; this "
            "computer writes the output."), advanced=True)

    def add_memory_and_scheduler(self) -> None:
        """MEMORY_MB and SCHEDULER, as every step that can run on a Dask cluster declares them; the engine
        arguments are ``memory_and_scheduler``'s."""
        self.add_memory()
        self.add_scheduler()

    def memory_and_scheduler(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, Any]:
        """The engine arguments ``memory_mb`` and ``scheduler`` of MEMORY_MB and SCHEDULER."""
        return dict(memory_mb=self.parameterAsInt(parameters, params.MEMORY_MB, context),
                    scheduler=self.scheduler(parameters, context))

    def scheduler(self, parameters: dict[str, Any], context: QgsProcessingContext) -> str | None:
        """SCHEDULER as the engine takes it: an address, or None for this process."""
        return self.parameterAsString(parameters, params.SCHEDULER, context).strip() or None

    def add_label_output(self, label: str) -> None:
        """OUTPUT (a label raster destination, ``label`` in the dialog) and the SEGMENT_COUNT output."""
        self.add(QgsProcessingParameterRasterDestination(params.OUTPUT, label),
                 self.tr("Label raster on the input's grid: segment 1..K, 0 = nodata, styled with one colour and "
                         "name per segment."))
        self.addOutput(QgsProcessingOutputNumber(params.SEGMENT_COUNT, self.tr("Number of segments produced")))

    def add_features_output(self, label: str, help_text: str) -> None:
        self.add(QgsProcessingParameterRasterDestination(params.FEATURES, label, optional=True, createByDefault=False),
                 help_text)

    def raster_path(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext,
                    required: bool = True) -> str | None:
        """File path of a raster parameter; GDAL (not QGIS) then says precisely what is wrong with it.

        Parameters
        ----------
        parameters : dict
            The run's parameter values.
        name : str
            The raster parameter.
        context : QgsProcessingContext
            The run's context.
        required : bool
            Whether an empty value is an error.

        Returns
        -------
        str or None
            The layer's file (or the value as given, for GDAL to judge); None when empty and not required.

        Raises
        ------
        QgsProcessingException
            The layer is not a GDAL raster, or no raster was given although one is required.
        """
        layer = self.parameterAsRasterLayer(parameters, name, context)
        label = self.parameterDefinition(name).description()
        if layer is not None:
            if layer.providerType() != "gdal":
                raise QgsProcessingException(self.tr(
                    "{label}: layer '{layer}' is not a file GDAL can read ({provider}). Save it as a GeoTIFF first "
                    "(Raster > Conversion > Translate).").format(label=label, layer=layer.name(),
                                                                 provider=layer.providerType()))
            return layer_path(layer)
        value = self.parameterAsString(parameters, name, context)
        if not value and required:
            raise QgsProcessingException(self.tr("{label}: no raster given.").format(label=label))
        return value or None

    def band_numbers(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext,
                     feedback: QgsProcessingFeedback | None = None) -> list[int] | None:
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

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        """Main thread: a map layer that must be drawn is cloned here (layers of the project belong to it)."""
        self._to_draw = None
        if isinstance(self.parameterDefinition(params.INPUT), QgsProcessingParameterMapLayer):
            layer = self.parameterAsLayer(parameters, params.INPUT, context)
            if layer is not None and not is_gdal_file(layer):
                self._to_draw = layer.clone()
                # owned by the run's context, so it is deleted with the run: a Python-owned clone still held by a
                # traceback at interpreter exit is destroyed after QGIS, which crashes the process
                context.temporaryLayerStore().addMapLayer(self._to_draw)
        return True

    def segmentation_input(self, parameters, context, feedback):
        """(raster path, engine Region, bands) of INPUT, EXTENT and MASK: a raster file as it is, any other layer
        drawn into a temporary GeoTIFF first."""
        layer = self._to_draw or self.parameterAsLayer(parameters, params.INPUT, context)
        if layer is None:
            raise QgsProcessingException(self.tr("Input layer: no layer given, or it cannot be opened."))
        crs = layer.crs()
        extent = None
        if parameters.get(params.EXTENT) not in (None, ""):
            extent = self.parameterAsExtent(parameters, params.EXTENT, context, crs)
        bands = self.band_numbers(parameters, params.BANDS, context, feedback)
        box = None
        if self._to_draw is not None:
            pixel_size = self.parameterAsDouble(parameters, params.PIXEL_SIZE, context) or native_pixel_size(layer)
            extent = extent if extent is not None else (None if isinstance(layer, QgsRasterLayer) else layer.extent())
            path = render_layer(layer, extent, pixel_size, crs, context.transformContext(), feedback)
            if bands:
                feedback.pushWarning(self.tr("Bands is ignored for a drawn layer: its red, green and blue are used."))
            bands = None
        else:
            path = layer_path(layer)
            box = None if extent is None else (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(),
                                               extent.yMaximum())
        mask = self.parameterAsSource(parameters, params.MASK, context)
        mask_name = self.layer_name(parameters, params.MASK, context) if mask is not None else None
        mask_path = polygons_file(mask, crs, context.transformContext(), feedback, mask_name) \
            if mask is not None else None
        return path, Region(extent=box, mask_path=mask_path, mask_name=mask_name), bands

    def layer_name(self, parameters, name, context):
        """How messages name the user's layer of parameter ``name``: "'layer name' (its file)"."""
        layer = self.parameterAsVectorLayer(parameters, name, context)
        if layer is None:
            value = parameters.get(name)
            source = getattr(value, "source", value)
            return f"'{getattr(source, 'staticValue', lambda: source)()}'"
        path = layer_path(layer)
        return f"'{layer.name()}' ({path})" if path and path != layer.name() else f"'{layer.name()}'"

    def segment(self, function: Callable[..., Any], parameters: dict[str, Any], context: QgsProcessingContext,
                feedback: QgsProcessingFeedback, **arguments: Any) -> Any:
        """Run the segmentation engine ``function`` with the arguments kmeans and cnn share plus ``arguments``;
        the drawn layer and the mask written for it are removed afterwards, whatever happens."""
        temporary = []
        try:
            input_path, region, bands = self.segmentation_input(parameters, context, feedback)
            temporary = [path for path in (input_path if self._to_draw is not None else None, region.mask_path)
                         if path]
            return self.run_engine(function, feedback, **arguments, **self.segmentation_arguments(
                parameters, context, input_path, region, bands))
        finally:
            self._to_draw = None  # the clone dies with the run, not at interpreter exit after QGIS is gone
            for path in temporary:
                gdal.Unlink(path)

    def segmentation_arguments(self, parameters, context, input_path, region, bands):
        """The engine arguments kmeans and cnn take alike (input, region, bands, K, seed, outputs, memory,
        reference)."""
        return dict(
            input_path=input_path,
            region=region if region else None,
            output_path=self.parameterAsOutputLayer(parameters, params.OUTPUT, context),
            segments=self.parameterAsInt(parameters, params.SEGMENTS, context),
            k_min=self.parameterAsInt(parameters, params.K_MIN, context),
            k_max=self.parameterAsInt(parameters, params.K_MAX, context),
            seed=self.parameterAsInt(parameters, params.SEED, context),
            bands=bands,
            features_path=self.parameterAsOutputLayer(parameters, params.FEATURES, context) or None,
            reference_path=self.raster_path(parameters, params.REFERENCE, context, required=False),
            **self.memory_and_scheduler(parameters, context),
        )

    @staticmethod
    def label_outputs(context: QgsProcessingContext, path: str, segments: int, **extra: Any) -> dict[str, Any]:
        """The outputs of a step that writes a label raster at ``path``, styled when QGIS loads it."""
        style_when_loaded(context, path)
        return {params.OUTPUT: path, params.SEGMENT_COUNT: segments, **extra}

    def segmentation_outputs(self, context, result, **extra):
        if result.features:
            extra[params.FEATURES] = result.features
        return self.label_outputs(context, result.output, result.present, **extra)

    @staticmethod
    def run_engine(function: Callable[..., Any], feedback: QgsProcessingFeedback, **arguments: Any) -> Any:
        """``function(progress=..., **arguments)`` with progress, log and cancel through ``feedback``.

        Parameters
        ----------
        function : callable
            An engine entry point (it takes ``progress``).
        feedback : QgsProcessingFeedback
            The run's feedback.
        **arguments
            The entry point's other arguments.

        Returns
        -------
        Any
            What ``function`` returns.

        Raises
        ------
        QgsProcessingException
            With the message of the engine's ``SegmenterError`` (input, output, cluster errors, cancel).
        """
        try:
            return function(progress=StageLog(feedback).progress(), **arguments)
        except SegmenterError as error:
            raise QgsProcessingException(str(error)) from None


class SegmentationAlgorithm(SegmenterAlgorithm):
    """segmenter:kmeans, segmenter:cnn and any further method: the parameters they share are declared here, once, in
    the order the dialogs show them; a method adds its own at the hooks and names its engine function.

        INPUT, BANDS, [method inputs], SEGMENTS, [method settings], SEED, REFERENCE, EXTENT, PIXEL_SIZE, MASK,
        [method advanced settings], K_MIN, K_MAX, MEMORY_MB, SCHEDULER, OUTPUT, FEATURES, [method outputs]

    (The shared texts stay in ``SegmenterAlgorithm``'s methods: their translations live under its name.)"""

    def output_texts(self):
        """(OUTPUT label, FEATURES label, FEATURES help) in the method's words."""
        raise NotImplementedError

    def add_method_inputs(self):
        """Parameters after BANDS (a model)."""

    def add_method_advanced(self):
        """Parameters after MASK, before MEMORY_MB."""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        output_label, features_label, features_help = self.output_texts()
        self.add_input_and_bands()
        self.add_method_inputs()
        self.add_segments()
        self.add_method_settings()
        self.add_seed_and_reference()
        self.add_region()
        self.add_method_advanced()
        self.add_k_range()
        self.add_memory_and_scheduler()
        self.add_label_output(output_label)
        self.add_features_output(features_label, features_help)
        self.add_method_outputs()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        result = self.segment(self.ENGINE, parameters, context, feedback, **self.method_arguments(parameters, context))
        return self.segmentation_outputs(context, result, **self.method_outputs(result))


class LabelStepAlgorithm(SegmenterAlgorithm):
    """segmenter:blur, segmenter:merge, segmenter:render: a post-processing step from the label raster INPUT to a
    styled label raster OUTPUT on its grid. The step declares its own parameters at the hooks, in the order the
    dialogs show them, and names its engine function:

        INPUT, [method settings], OUTPUT, [method outputs]
    """

    GROUP = POSTPROCESSING

    def io_texts(self):
        """(INPUT help, OUTPUT label) in the step's words."""
        raise NotImplementedError

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        input_help, output_label = self.io_texts()
        self.add_segments_input(input_help)
        self.add_method_settings()
        self.add_label_output(output_label)
        self.add_method_outputs()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        result = self.run_engine(self.ENGINE, feedback,
                                 input_path=self.raster_path(parameters, params.INPUT, context),
                                 output_path=self.parameterAsOutputLayer(parameters, params.OUTPUT, context),
                                 **self.method_arguments(parameters, context))
        return self.label_outputs(context, result.output, result.present, **self.method_outputs(result))
