"""``segmenter:kmeans``: K-Means on colour and texture block descriptors."""

from ..engine.runtime import params
from ..engine.segmentation.kmeans_segmentation import segment_kmeans
from .base import SegmentationAlgorithm


class KMeansAlgorithm(SegmentationAlgorithm):
    ID = "kmeans"
    ENGINE = staticmethod(segment_kmeans)

    def texts(self):
        title = self.tr("K-Means segmentation")
        summary = self.tr("Unsupervised segmentation into K kinds of region by colour and texture.")
        return title, summary, self.tr(
            "Divides a raster into K kinds of region (segments) of similar colour and texture, without training "
            "data.\n\n"
            "The raster is cut into square blocks of Block size pixels. Each block is described by its mean colour "
            "and the spread of each band (texture), taken over the block and its eight neighbours. K-Means finds "
            "K typical descriptions on a sample spread over the whole raster, then every block joins the nearest "
            "one. Works on rasters of any size; the result does not depend on the memory budget.\n\n"
            "Input layer: any raster GDAL reads (GeoTIFF, JPEG, VRT...), 8-bit, 16-bit or float; or any other map "
            "layer (an XYZ or WMS basemap, a vector layer...), which is first drawn with its style. Nodata and "
            "transparent pixels stay nodata.\n"
            "Bands: the bands to segment; empty means the first three bands that are not alpha. Choose band 1 "
            "for a grey-scale raster, or pick e.g. the near-infrared band.\n"
            "Number of segments (K): how many kinds of region to find (2-254), or 0 (automatic): K is chosen "
            "between Smallest K and Largest K (advanced, 2 and 12) by merging the most alike segments while a "
            "merge loses less than 4 % of the variance; the log shows that share for every K and the K chosen, "
            "the result's metadata keeps it, and Merge segments cuts the result to fewer segments later.\n"
            "Block size: side of a block in pixels. 4 gives fine detail, 8 medium, 16 coarse and fast.\n"
            "Random seed: the same seed gives the same result.\n"
            "Reference segmentation: optional result of an earlier run; its segments are reused, so several "
            "rasters get the same segment for the same kind of surface.\n"
            "Area to segment: optional extent; a raster file is cut on its own pixel grid, so the result lines up "
            "pixel for pixel with a run over the whole raster. Required for web layers.\n"
            "Pixel size for drawn layers: the pixel size web and vector layers are drawn at, in their CRS units; "
            "0 = the layer's finest resolution (required for vector layers).\n"
            "Mask polygons: optional; pixels outside them are nodata and take no part in the fit.\n"
            "Smallest K, Largest K (advanced): the range the automatic choice considers.\n"
            "Memory budget (advanced): working memory; large rasters are processed in windows that fit it.\n"
            "Dask scheduler (advanced): optional address of a Dask cluster's scheduler, e.g. tcp://10.0.0.5:8786; "
            "its workers process the windows, with the same result. Empty = this computer.\n\n"
            "Segments: a label raster on the input's grid, segments 1..K ordered from dark to light, 0 = nodata, "
            "styled with one colour and name per segment.\n"
            "Block descriptors (optional): the descriptors, one band each, one pixel per block, for Latent KNN "
            "refinement."
        )

    def output_texts(self):
        return (self.tr("Segments"), self.tr("Block descriptors"),
                self.tr("Optional: the block descriptors (Float32, one band each, one pixel per block), the Features "
                        "input of Latent KNN refinement."))

    def add_method_settings(self):
        self.integer(params.BLOCK_SIZE, self.tr("Block size (px)"), 4, 1, 4096,
                     self.tr("Side of the square blocks that are described and labelled: 4 = fine, 8 = medium, "
                             "16 = coarse."))

    def method_arguments(self, parameters, context):
        return dict(block=self.parameterAsInt(parameters, params.BLOCK_SIZE, context))
