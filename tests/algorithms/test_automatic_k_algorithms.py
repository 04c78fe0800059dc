"""SEGMENTS = 0 and segmenter:merge through processing.run, qgis_process and the shipped model's default."""

import json

import numpy as np
from osgeo import gdal
from qgis.core import QgsApplication

from map_segmenter.engine.rasters.metadata import read_metadata
from map_segmenter.engine.segmentation import hierarchy
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.blur import blur_labels
from map_segmenter.engine.steps.knn_refine import refine_knn
from map_segmenter.engine.steps.merge import merge_labels

from helpers import qgis_process, read_array


def test_kmeans_segments_0_through_processing_run_equals_the_engine(processing_run, tmp_path, kampala_crop):
    out = str(tmp_path / "auto.tif")
    result = processing_run("segmenter:kmeans", {"INPUT": kampala_crop, "SEGMENTS": 0, "OUTPUT": out})
    engine = segment_kmeans(kampala_crop, str(tmp_path / "engine.tif"), segments=0)
    assert result["SEGMENT_COUNT"] == engine.present == engine.criterion["k"]
    np.testing.assert_array_equal(read_array(out), read_array(tmp_path / "engine.tif"))
    assert read_metadata(gdal.Open(out))["criterion"] == json.loads(json.dumps(engine.criterion))


def test_k_range_parameters_reach_the_engine(processing_run, tmp_path, kampala_crop):
    out = str(tmp_path / "range.tif")
    processing_run("segmenter:kmeans", {"INPUT": kampala_crop, "SEGMENTS": 0, "K_MIN": 7, "K_MAX": 9,
                                        "OUTPUT": out})
    criterion = read_metadata(gdal.Open(out))["criterion"]
    assert (criterion["k_min"], criterion["k_max"]) == (7, 9) and 7 <= criterion["k"] <= 9


def test_merge_through_processing_run_and_qgis_process(processing_run, tmp_path, kampala_crop):
    labels = str(tmp_path / "k8.tif")
    segment_kmeans(kampala_crop, labels, segments=8)
    out = str(tmp_path / "k3.tif")
    result = processing_run("segmenter:merge", {"INPUT": labels, "SEGMENTS": 3, "OUTPUT": out})
    assert result["SEGMENT_COUNT"] == 3 and result["OUTPUT"] == out
    table = hierarchy.cut(read_metadata(gdal.Open(labels))["merges"], 8, 3)
    np.testing.assert_array_equal(read_array(out), table[read_array(labels)])
    cli = tmp_path / "cli.tif"
    qgis_process("run", "segmenter:merge", "--", f"INPUT={labels}", "SEGMENTS=3", f"OUTPUT={cli}")
    np.testing.assert_array_equal(read_array(cli), read_array(out))
    assert (tmp_path / "cli.qml").exists()


def test_merge_is_registered_with_help(processing_run):
    algorithm = QgsApplication.processingRegistry().algorithmById("segmenter:merge")
    assert algorithm.displayName() == "Merge segments (re-cut K)"
    assert "merge tree" in algorithm.shortHelpString()
    assert all(p.help() for p in algorithm.parameterDefinitions())


def test_the_shipped_model_chooses_k_by_default(processing_run, tmp_path, kampala_crop):
    model = QgsApplication.processingRegistry().algorithmById("segmenter:segment_smooth_refine_render")
    assert model.parameterDefinition("SEGMENTS").defaultValue() == 0
    out = str(tmp_path / "model.tif")
    processing_run("segmenter:segment_smooth_refine_render", {"INPUT": kampala_crop, "render:Segments": out})
    segment_kmeans(kampala_crop, str(tmp_path / "k.tif"), segments=0, features_path=str(tmp_path / "f.tif"))
    blur_labels(str(tmp_path / "k.tif"), str(tmp_path / "b.tif"))
    refine_knn(str(tmp_path / "b.tif"), str(tmp_path / "f.tif"), str(tmp_path / "r.tif"))
    np.testing.assert_array_equal(read_array(out), read_array(tmp_path / "r.tif"))
    # the chain keeps the tree: the refined, rendered result can be re-cut
    merge_labels(out, str(tmp_path / "two.tif"), 2)
    assert set(np.unique(read_array(tmp_path / "two.tif"))) <= {0, 1, 2}


def test_kmeans_segments_0_through_qgis_process(tmp_path, kampala_crop):
    out = tmp_path / "cli_auto.tif"
    qgis_process("run", "segmenter:kmeans", "--", f"INPUT={kampala_crop}", "SEGMENTS=0", f"OUTPUT={out}")
    segment_kmeans(kampala_crop, str(tmp_path / "engine.tif"), segments=0)
    np.testing.assert_array_equal(read_array(out), read_array(tmp_path / "engine.tif"))
