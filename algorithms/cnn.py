"""``segmenter:cnn``: K-Means on the embeddings of a CNN run through ONNX Runtime."""

import os

from qgis.core import (
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
)

from ..engine.backends.onnx_runtime import DEVICES
from ..engine.runtime import params
from ..engine.segmentation.cnn_segmentation import segment_cnn
from .base import SegmentationAlgorithm
from .qgis_compat import ProcessingFileParameterBehavior

MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "onnx_models")
NO_MODEL = "(no model shipped: choose Other model file)"

DEFAULT_MODEL = "student_s4_v1"  # the trained model (see its card in onnx_models/)


USER_MODELS_ENV = "MAP_SEGMENTER_MODELS"
USER_SUFFIX = " (user)"


def shipped_models():
    """Names of the .onnx files in onnx_models/: the default first, then the others sorted."""
    if not os.path.isdir(MODELS_DIR):
        return []
    names = sorted(name[:-5] for name in os.listdir(MODELS_DIR) if name.endswith(".onnx"))
    return sorted(names, key=lambda name: name != DEFAULT_MODEL)


def user_models_dir():
    """The user's model folder: $MAP_SEGMENTER_MODELS, else map_segmenter/models in the active QGIS profile
    folder (Linux: ~/.local/share/QGIS/QGIS3/profiles/default/map_segmenter/models)."""
    from qgis.core import QgsApplication

    return os.environ.get(USER_MODELS_ENV) or os.path.join(QgsApplication.qgisSettingsDirPath(), "map_segmenter",
                                                           "models")


def user_models():
    """Names of the .onnx files in the user's model folder, sorted, each marked " (user)"."""
    folder = user_models_dir()
    if not os.path.isdir(folder):
        return []
    return [name[:-5] + USER_SUFFIX for name in sorted(os.listdir(folder)) if name.endswith(".onnx")]


def model_file(name):
    """The .onnx file of a MODEL list entry."""
    if name.endswith(USER_SUFFIX):
        return os.path.join(user_models_dir(), name[: -len(USER_SUFFIX)] + ".onnx")
    return os.path.join(MODELS_DIR, name + ".onnx")


class CnnAlgorithm(SegmentationAlgorithm):
    ID = "cnn"
    ENGINE = staticmethod(segment_cnn)

    def texts(self):
        title = self.tr("CNN segmentation")
        summary = self.tr("Unsupervised segmentation into K kinds of region from CNN embeddings (ONNX Runtime).")
        return title, summary, self.tr(
            "Divides a raster into K kinds of region (segments) using a convolutional network (CNN), without "
            "training data.\n\n"
            "The network turns every 4 x 4 pixel cell into a vector describing its appearance and surroundings. "
            "K-Means finds K typical vectors on a sample spread over the whole raster, then every pixel joins the "
            "nearest one, with distances interpolated between cells so that boundaries are not blocky. The raster "
            "is processed in overlapping tiles, so there are no seams; the result does not depend on the tile "
            "size, batch size, threads or memory budget (except for networks with global attention, such as ViTs "
            "exported with training.export_backbone: their tiles are blended and the log warns that the result "
            "depends on the tile size).\n\n"
            "Needs the Python package onnxruntime (the other Map Segmenter algorithms work without it). If it is "
            "missing, the algorithm stops and prints the command that installs it for the Python QGIS runs; "
            "nothing is installed automatically.\n\n"
            "Input layer: any raster GDAL reads, 8-bit RGB expected (16-bit and float rasters are scaled from "
            "their 1st-99th percentiles); or any other map layer (an XYZ or WMS basemap, a vector layer...), which "
            "is first drawn with its style. Nodata and transparent pixels stay nodata.\n"
            "Bands: the three bands to feed the network as red, green, blue; empty means the first three bands "
            "that are not alpha. A single band is fed three times.\n"
            "Model: a network shipped with the plugin (each has a model card beside it in onnx_models), or one of "
            "yours, marked (user): .onnx files placed in the folder map_segmenter/models of your QGIS profile "
            "folder (Settings > User Profiles > Open Active Profile Folder), read when QGIS starts.\n"
            "Other model file: an .onnx file used instead of Model; it must follow the Map Segmenter model "
            "contract (see the README).\n"
            "Number of segments (K): how many kinds of region to find (2-254), or 0 (automatic): K is chosen "
            "between Smallest K and Largest K (advanced, 2 and 12) by merging the most alike segments while a "
            "merge loses less than 4 % of the variance; the log shows that share for every K and the K chosen, "
            "the result's metadata keeps it, and Merge segments cuts the result to fewer segments later.\n"
            "Device: where the network runs. auto: an NVIDIA GPU (CUDA) if this ONNX Runtime has it, else Apple's "
            "CoreML, else the CPU; cuda needs onnxruntime-gpu; coreml is for macOS. An unavailable device falls "
            "back to the CPU with a warning; the log names the device used.\n"
            "Random seed: the same seed gives the same result.\n"
            "Reference segmentation: optional result of an earlier run with the same model; its segments are "
            "reused, so several rasters get the same segment for the same kind of surface.\n"
            "Area to segment: optional extent; a raster file is cut on its own pixel grid. Required for web "
            "layers.\n"
            "Pixel size for drawn layers: the pixel size web and vector layers are drawn at, in their CRS units; "
            "0 = the layer's finest resolution (required for vector layers).\n"
            "Mask polygons: optional; pixels outside them are nodata and take no part in the fit.\n"
            "Smallest K, Largest K (advanced): the range the automatic choice considers.\n"
            "Tile size, Batch size, CPU threads, Memory budget (advanced): how the work is cut up; they change "
            "speed and memory, never the result.\n"
            "Dask scheduler (advanced): optional address of a Dask cluster's scheduler, e.g. tcp://10.0.0.5:8786; "
            "its workers run the network and process the windows, with the same result. Empty = this computer.\n\n"
            "Segments: a label raster on the input's grid, segments 1..K ordered from dark to light, 0 = nodata, "
            "styled with one colour and name per segment.\n"
            "Embeddings (optional): the network's vectors, one band each, one pixel per 4 x 4 cell, for Latent KNN "
            "refinement."
        )

    def output_texts(self):
        return (self.tr("Segments"), self.tr("Embeddings"),
                self.tr("Optional: the network's embeddings (Float32, one band each, one pixel per 4 x 4 cell), the "
                        "Features input of Latent KNN refinement."))

    def add_method_inputs(self):
        models = (shipped_models() + user_models()) or [NO_MODEL]
        self.add(QgsProcessingParameterEnum(params.MODEL, self.tr("Model"), models, False, models[0], False, True),
                 self.tr("Embedding network shipped with the plugin (its model card lies beside it in the plugin's "
                         "onnx_models folder), or yours (user) from map_segmenter/models in the QGIS profile folder."))
        self.add(QgsProcessingParameterFile(params.MODEL_PATH, self.tr("Other model file (.onnx, instead of Model)"),
                                            ProcessingFileParameterBehavior.File, "onnx", None, True),
                 self.tr("Optional .onnx file used instead of Model (input \"rgb\", output \"embeddings\", "
                         "metadata model_type \"embedding\")."))

    def add_method_settings(self):
        self.add(QgsProcessingParameterEnum(params.DEVICE, self.tr("Device"), list(DEVICES), False, "auto", False,
                                            True),
                 self.tr("auto: CUDA (NVIDIA GPU), else CoreML (Apple), else CPU, whichever this ONNX Runtime "
                         "offers. An unavailable device falls back to the CPU with a warning."))

    def add_method_advanced(self):
        self.integer(params.TILE_SIZE, self.tr("Tile size (px, 0 = model default)"), 0, 0, 16384,
                     self.tr("Side of the tiles given to the network, overlap included; 0 = the size the model "
                             "recommends."), advanced=True)
        self.integer(params.BATCH_SIZE, self.tr("Batch size (tiles)"), 4, 1, 1024,
                     self.tr("Tiles per network call; larger batches can be faster on a GPU."), advanced=True)
        self.integer(params.THREADS, self.tr("CPU threads (0 = all cores)"), 0, 0, 1024,
                     self.tr("CPU threads for the network, each running it on tiles of its own; 0 = one per core."),
                     advanced=True)

    def add_method_outputs(self):
        self.addOutput(QgsProcessingOutputString(params.PROVIDER, self.tr("ONNX Runtime execution provider used")))

    def model_path(self, parameters, context):
        path = self.parameterAsFile(parameters, params.MODEL_PATH, context)
        if path:
            return path
        name = self.parameterAsEnumString(parameters, params.MODEL, context)
        if not name or name == NO_MODEL:
            return ""
        return model_file(name)

    def method_arguments(self, parameters, context):
        return dict(
            model_path=self.model_path(parameters, context),
            device=self.parameterAsEnumString(parameters, params.DEVICE, context),
            tile_size=self.parameterAsInt(parameters, params.TILE_SIZE, context),
            batch_size=self.parameterAsInt(parameters, params.BATCH_SIZE, context),
            threads=self.parameterAsInt(parameters, params.THREADS, context),
        )

    def method_outputs(self, result):
        return {params.PROVIDER: result.provider}
