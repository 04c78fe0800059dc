"""Degenerate results through processing.run: warned in the log, and SEGMENT_COUNT is the number of segments the output
holds (it was K, or every value of an image taken for labels)."""

import numpy as np
from osgeo import gdal
from qgis.core import QgsProcessingFeedback

from helpers import KAMPALA, read_array, write_raster


class Log(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.warnings = []

    def pushWarning(self, warning):  # noqa: N802 - QGIS API
        self.warnings.append(warning)


def test_kmeans_of_a_one_colour_raster_reports_one_segment(processing_run, tmp_path):
    colour = np.array([200, 180, 40], np.uint8)[:, None, None]
    flat = write_raster(tmp_path / "flat.tif", np.broadcast_to(colour, (3, 50, 40)).copy())
    feedback = Log()
    result = processing_run("segmenter:kmeans", {"INPUT": flat, "SEGMENTS": 8, "OUTPUT": str(tmp_path / "k.tif")},
                            feedback=feedback)
    assert result["SEGMENT_COUNT"] == 1 and np.unique(read_array(result["OUTPUT"])).tolist() == [1]
    assert [w for w in feedback.warnings if w.startswith("Only 1 of the 8 segments occur in the output (id 1)")]


def test_blur_and_render_of_a_grey_photo(processing_run, tmp_path):
    photo = str(tmp_path / "grey.tif")
    gdal.Translate(photo, str(KAMPALA), bandList=[1], srcWin=[0, 0, 256, 256])
    distinct = int(np.count_nonzero(np.unique(read_array(photo))))
    for algorithm in ("segmenter:blur", "segmenter:render"):
        feedback = Log()
        result = processing_run(algorithm, {"INPUT": photo, "OUTPUT": str(tmp_path / f"{algorithm[10:]}.tif")},
                                feedback=feedback)
        assert result["SEGMENT_COUNT"] == np.count_nonzero(np.unique(read_array(result["OUTPUT"])))
        assert f"'{photo}' does not look like a label raster: it has no Map Segmenter metadata and {distinct} " \
               f"distinct values" in feedback.warnings[0]
    assert result["SEGMENT_COUNT"] == distinct  # render keeps every value
