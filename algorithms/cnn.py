"""``segmenter:cnn``: K-Means on the embeddings of a CNN run through ONNX Runtime."""

import os

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..engine.cnn_segmentation import segment_cnn
from ..engine.onnx_runtime import DEVICES
from .base import SegmenterAlgorithm

MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "onnx_models")
NO_MODEL = "(no model shipped: choose MODEL_PATH)"

HELP = """Divides a raster into K kinds of region ("segments") using the embeddings of a convolutional network (CNN), without labels.

The network (an ONNX model) turns every 4 x 4 pixel cell into a vector describing its appearance and surroundings. K-Means centres are fitted on a seeded sample of these vectors spread over the whole raster, then every pixel takes the nearest centre, with the distances interpolated between neighbouring cells so that boundaries are not blocky. The raster is processed in overlapping tiles whose overlap covers the network's receptive field, so there are no seams, and each tile is run through the network once. Results do not depend on TILE_SIZE, BATCH_SIZE, THREADS or MEMORY_MB.

Needs the Python package onnxruntime (every other Map Segmenter algorithm works without it). If it is missing, the algorithm stops and prints the exact pip command that installs it for the Python QGIS runs; nothing is installed automatically.

Input: any raster GDAL reads, 8-bit RGB expected (16-bit and float rasters are scaled from their 1st-99th percentiles). Nodata pixels and alpha = 0 are left out and stay nodata.
BANDS: the 3 bands to feed the network as red, green, blue; default: the first three bands that are not alpha. A grey-scale raster (or one chosen band) is fed three times.
MODEL: an embedding model shipped in the plugin's onnx_models folder (each has a model card .md beside it).
MODEL_PATH: optional .onnx file used instead of MODEL; it must follow the Map Segmenter model contract (input "rgb", output "embeddings", metadata model_type "embedding").
SEGMENTS: number of kinds of region K (2-254).
DEVICE: where the network runs. auto = CUDA, else CoreML, else CPU, whichever this onnxruntime offers; cuda (needs onnxruntime-gpu), coreml (macOS), cpu. An unavailable device falls back to CPU with a warning; the log names the device used.
SEED: seed of the sample and initialisation; same seed, same result.
REFERENCE: optional label raster made earlier by this algorithm with the same model; its centres are used instead of fitting, so several rasters get the same id for the same kind of surface.
TILE_SIZE (advanced): side in pixels of the tiles given to the network, overlap included; 0 = the model's recommended size.
BATCH_SIZE (advanced): tiles per network call; larger batches can be faster on a GPU.
THREADS (advanced): CPU threads for the network; 0 = onnxruntime's default (all cores).
MEMORY_MB (advanced): working-memory budget; the batch size is lowered and the labels are written in windows to stay within it.

Output: Byte label raster on the input's grid: ids 1..K ordered from dark to light, 0 = nodata, with a colour table and a .qml style. FEATURES (optional): the embeddings, one Float32 band each, on the 4 x 4 px cell grid, for segmenter:knn_refine."""


DEFAULT_MODEL = "student_s4_v1"  # the trained model (see its card in onnx_models/)


def shipped_models():
    """Names of the .onnx files in onnx_models/: the default first, then the others sorted."""
    if not os.path.isdir(MODELS_DIR):
        return []
    names = sorted(name[:-5] for name in os.listdir(MODELS_DIR) if name.endswith(".onnx"))
    return sorted(names, key=lambda name: name != DEFAULT_MODEL)


class CnnAlgorithm(SegmenterAlgorithm):
    ID = "cnn"
    TITLE = "CNN segmentation"
    SUMMARY = "Unsupervised segmentation into K kinds of region from CNN embeddings (ONNX Runtime)."
    HELP = HELP

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        models = shipped_models() or [NO_MODEL]
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Input raster"))
        self.addParameter(
            QgsProcessingParameterBand("BANDS", "Bands (default: first three)", None, "INPUT", True, True)
        )
        self.addParameter(QgsProcessingParameterEnum("MODEL", "Model", models, False, models[0], False, True))
        self.addParameter(
            QgsProcessingParameterFile("MODEL_PATH", "Other model file (.onnx, instead of MODEL)",
                                       QgsProcessingParameterFile.File, "onnx", None, True)
        )
        self.addParameter(
            QgsProcessingParameterNumber("SEGMENTS", "Segments (K)", QgsProcessingParameterNumber.Integer, 8,
                                         False, 2, 254)
        )
        self.addParameter(QgsProcessingParameterEnum("DEVICE", "Device", list(DEVICES), False, "auto", False, True))
        self.addParameter(QgsProcessingParameterNumber("SEED", "Seed", QgsProcessingParameterNumber.Integer, 0,
                                                       False, 0))
        self.addParameter(
            QgsProcessingParameterRasterLayer("REFERENCE", "Reference segmentation (reuse its centres)",
                                              optional=True)
        )
        self.addParameter(self.advanced(
            QgsProcessingParameterNumber("TILE_SIZE", "Tile size (px, 0 = model default)",
                                         QgsProcessingParameterNumber.Integer, 0, False, 0, 16384)
        ))
        self.addParameter(self.advanced(
            QgsProcessingParameterNumber("BATCH_SIZE", "Batch size (tiles)", QgsProcessingParameterNumber.Integer,
                                         4, False, 1, 1024)
        ))
        self.addParameter(self.advanced(
            QgsProcessingParameterNumber("THREADS", "CPU threads (0 = default)",
                                         QgsProcessingParameterNumber.Integer, 0, False, 0, 1024)
        ))
        self.addParameter(self.advanced(
            QgsProcessingParameterNumber("MEMORY_MB", "Memory budget (MB)", QgsProcessingParameterNumber.Integer,
                                         256, False, 1, 1_000_000)
        ))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Segments"))
        self.addParameter(
            QgsProcessingParameterRasterDestination("FEATURES", "Embeddings", optional=True, createByDefault=False)
        )
        self.addOutput(QgsProcessingOutputNumber("SEGMENTS", "Number of segments"))
        self.addOutput(QgsProcessingOutputString("PROVIDER", "ONNX Runtime execution provider used"))

    def model_path(self, parameters, context):
        path = self.parameterAsFile(parameters, "MODEL_PATH", context)
        if path:
            return path
        name = self.parameterAsEnumString(parameters, "MODEL", context)
        if not name or name == NO_MODEL:
            return ""
        return os.path.join(MODELS_DIR, name + ".onnx")

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        result = self.run_engine(
            segment_cnn,
            feedback,
            model_path=self.model_path(parameters, context),
            device=self.parameterAsEnumString(parameters, "DEVICE", context),
            tile_size=self.parameterAsInt(parameters, "TILE_SIZE", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            threads=self.parameterAsInt(parameters, "THREADS", context),
            **self.segmentation_arguments(parameters, context, feedback),
        )
        return self.segmentation_outputs(result, PROVIDER=result.provider)
