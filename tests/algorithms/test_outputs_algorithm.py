"""Issue 10 through processing.run: QGIS passes any destination name through, so the engine's checks are what
protect inputs and users' files; messages and warnings reach QGIS."""

import os

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

from helpers import write_raster


class Warnings(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.warnings = []

    def pushWarning(self, warning):  # noqa: N802 - QGIS API
        self.warnings.append(warning)
        super().pushWarning(warning)


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(0)
    pixels = np.repeat(np.repeat(rng.integers(0, 255, (3, 8, 8)), 8, axis=1), 8, axis=2).astype(np.uint8)
    return write_raster(tmp_path / "image.tif", pixels)


def test_the_provider_declares_the_extensions_the_engine_writes(processing_run):
    provider = QgsApplication.processingRegistry().providerById("segmenter")
    assert provider.supportedOutputRasterLayerExtensions() == ["tif", "tiff"]


@pytest.mark.parametrize("name", ["x.png", "x.gpkg", "x"])
def test_an_unsupported_output_name_is_refused(processing_run, tmp_path, image, name):
    with pytest.raises(QgsProcessingException, match=r"OUTPUT '.*' .*\.tif or \.tiff"):
        processing_run("segmenter:kmeans", {"INPUT": image, "SEGMENTS": 3, "OUTPUT": str(tmp_path / name)})
    assert [name for name in os.listdir(tmp_path) if not name.startswith("image.tif")] == []


def test_the_quicklook_must_be_a_png(processing_run, tmp_path, image):
    labels = str(tmp_path / "labels.tif")
    processing_run("segmenter:kmeans", {"INPUT": image, "SEGMENTS": 3, "OUTPUT": labels})
    with pytest.raises(QgsProcessingException, match=r"QUICKLOOK '.*look\.jpg' .*\.png"):
        processing_run("segmenter:render", {"INPUT": labels, "OUTPUT": str(tmp_path / "styled.tif"),
                                            "QUICKLOOK": str(tmp_path / "look.jpg")})
    assert not [name for name in os.listdir(tmp_path) if name.startswith(("styled", "look", "."))]


def test_the_reference_is_never_overwritten(processing_run, tmp_path, image):
    reference = str(tmp_path / "reference.tif")
    processing_run("segmenter:kmeans", {"INPUT": image, "SEGMENTS": 3, "OUTPUT": reference})
    before = open(reference, "rb").read()
    with pytest.raises(QgsProcessingException, match=r"OUTPUT '.*reference\.tif' is also an input \(REFERENCE"):
        processing_run("segmenter:kmeans", {"INPUT": image, "REFERENCE": reference, "OUTPUT": reference})
    assert open(reference, "rb").read() == before


def test_a_users_style_is_kept_and_the_user_warned(processing_run, tmp_path, image):
    photo = str(tmp_path / "ortho.jpg")
    gdal.Translate(photo, image, format="JPEG")
    mine = tmp_path / "ortho.qml"
    mine.write_text("<qgis><!-- my style --></qgis>\n")
    feedback = Warnings()
    processing_run("segmenter:kmeans", {"INPUT": photo, "SEGMENTS": 3, "OUTPUT": str(tmp_path / "ortho.tif")},
                   feedback=feedback)
    assert mine.read_text() == "<qgis><!-- my style --></qgis>\n"
    assert [warning for warning in feedback.warnings if str(mine) in warning and "colour table" in warning]
