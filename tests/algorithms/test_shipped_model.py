"""The shipped model "Segment, smooth, refine and render": in the Toolbox, through processing.run and qgis_process."""

import numpy as np
import pytest
from qgis.core import QgsApplication

from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.blur import blur_labels
from map_segmenter.engine.steps.knn_refine import refine_knn
from map_segmenter.engine.steps.render import render_labels

from helpers import qgis_process, read_array, write_raster

MODEL = "segmenter:segment_smooth_refine_render"


@pytest.fixture(scope="module")
def chain_by_hand(tmp_path_factory, kampala_crop):
    """The same chain, step by step through the engine: what the model must reproduce exactly."""
    folder = tmp_path_factory.mktemp("by_hand")
    segment_kmeans(kampala_crop, str(folder / "k.tif"), segments=5, block=4, features_path=str(folder / "f.tif"))
    blur_labels(str(folder / "k.tif"), str(folder / "b.tif"), strength="high")
    refine_knn(str(folder / "b.tif"), str(folder / "f.tif"), str(folder / "r.tif"))
    render_labels(str(folder / "r.tif"), str(folder / "final.tif"))
    return read_array(folder / "final.tif")


def test_model_is_registered_with_typed_output(processing_run):
    model = QgsApplication.processingRegistry().algorithmById(MODEL)
    assert model is not None and model.displayName() == "Segment, smooth, refine and render"
    assert [d.name() for d in model.destinationParameterDefinitions()] == ["render:Segments"]


def test_model_through_processing_run_equals_the_chain(processing_run, tmp_path, kampala_crop, chain_by_hand):
    out = str(tmp_path / "model.tif")
    result = processing_run(MODEL, {"INPUT": kampala_crop, "SEGMENTS": 5, "BLOCK_SIZE": 4, "STRENGTH": 2,
                                    "render:Segments": out})
    assert result["render:Segments"] == out
    assert np.array_equal(read_array(out), chain_by_hand)
    assert (tmp_path / "model.qml").exists()


def test_model_through_qgis_process_equals_the_chain(tmp_path, kampala_crop, chain_by_hand):
    out = tmp_path / "cli_model.tif"
    qgis_process("run", MODEL, "--", f"INPUT={kampala_crop}", "SEGMENTS=5", "STRENGTH=2", f"render:Segments={out}")
    assert np.array_equal(read_array(out), chain_by_hand)


def test_model_takes_bands_for_a_grey_scale_raster(processing_run, tmp_path, kampala_crop):
    model = QgsApplication.processingRegistry().algorithmById(MODEL)
    assert [p.name() for p in model.parameterDefinitions()][:5] == ["INPUT", "BANDS", "SEGMENTS", "BLOCK_SIZE",
                                                                    "STRENGTH"]
    grey = write_raster(tmp_path / "grey.tif", read_array(kampala_crop)[1])
    out = str(tmp_path / "grey_model.tif")
    processing_run(MODEL, {"INPUT": grey, "BANDS": [1], "SEGMENTS": 4, "render:Segments": out})
    segment_kmeans(grey, str(tmp_path / "k.tif"), segments=4, bands=[1], features_path=str(tmp_path / "f.tif"))
    blur_labels(str(tmp_path / "k.tif"), str(tmp_path / "b.tif"))
    refine_knn(str(tmp_path / "b.tif"), str(tmp_path / "f.tif"), str(tmp_path / "r.tif"))
    assert np.array_equal(read_array(out), read_array(tmp_path / "r.tif"))


STATISTICS_MODEL = "segmenter:segment_smooth_refine_render_statistics"


def test_the_statistics_model_measures_the_chains_segments(processing_run, tmp_path, kampala_crop, chain_by_hand):
    """The second shipped model: the same chain, then segmenter:statistics on its result."""
    from qgis.core import QgsVectorLayer

    model = QgsApplication.processingRegistry().algorithmById(STATISTICS_MODEL)
    assert model.displayName() == "Segment, smooth, refine, render and measure"
    destinations = {d.name(): d for d in model.destinationParameterDefinitions()}
    assert sorted(destinations) == ["render:Segments", "statistics:Polygons", "statistics:Report",
                                    "statistics:Statistics"]
    assert not destinations["statistics:Polygons"].createByDefault()  # polygonizing is asked for, never imposed
    outputs = {"render:Segments": str(tmp_path / "segments.tif"), "statistics:Statistics": str(tmp_path / "t.csv"),
               "statistics:Polygons": str(tmp_path / "p.gpkg")}
    result = processing_run(STATISTICS_MODEL, {"INPUT": kampala_crop, "SEGMENTS": 5, "BLOCK_SIZE": 4,
                                               "STRENGTH": 2, **outputs})
    assert np.array_equal(read_array(outputs["render:Segments"]), chain_by_hand)
    table = QgsVectorLayer(result["statistics:Statistics"], "t", "ogr")
    counts = np.bincount(chain_by_hand.ravel(), minlength=6)
    rows = sorted(table.getFeatures(), key=lambda feature: feature["segment"])
    assert [row["pixels"] for row in rows] == counts[1:].tolist()
    # no colour columns: the model's INPUT may be a drawn layer or cut by EXTENT, so it is not on the labels' grid
    assert "band1_mean" not in table.fields().names()
    assert QgsVectorLayer(result["statistics:Polygons"], "p", "ogr").featureCount() > 5
    assert not (tmp_path / "report.html").exists()
