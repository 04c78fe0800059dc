"""Batch use: every algorithm runs again and again in one QGIS process, on other inputs, without leaking state."""

import numpy as np

from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.render import render_labels

from helpers import KAMPALA, crop_real, read_array


def test_repeated_runs_with_different_inputs_match_fresh_engine_runs(processing_run, tmp_path):
    crops = [crop_real(KAMPALA, tmp_path / f"crop{i}.tif", 300 + 37 * i, 260 - 21 * i, 400 * i, 300 * i)
             for i in range(3)]
    first_labels = None
    for round_number in range(2):  # the second round repeats the first: same results, nothing carried over
        for index, crop in enumerate(crops):
            stem = tmp_path / f"r{round_number}_{index}"
            segments = 4 + index
            parameters = {"INPUT": crop, "SEGMENTS": segments, "SEED": index, "OUTPUT": f"{stem}_labels.tif"}
            if index == 2 and first_labels:
                parameters["REFERENCE"] = first_labels  # only this run uses a reference
            labels = processing_run("segmenter:kmeans", parameters)["OUTPUT"]
            styled = processing_run("segmenter:render", {"INPUT": labels, "PALETTE": 2,
                                                         "OUTPUT": f"{stem}_styled.tif"})["OUTPUT"]
            expected = tmp_path / f"engine_{round_number}_{index}.tif"
            segment_kmeans(crop, str(expected), segments=segments, seed=index,
                           reference_path=parameters.get("REFERENCE"))
            assert np.array_equal(read_array(labels), read_array(expected))
            assert np.array_equal(read_array(styled), read_array(expected))
            render_labels(str(expected), str(tmp_path / "engine_styled.tif"), palette="ramp")
            assert (tmp_path / "engine_styled.qml").read_text() == (tmp_path / f"{stem}_styled.qml").read_text()
            if index == 0:
                first_labels = labels
    for index in range(3):
        assert (tmp_path / f"r0_{index}_labels.tif").read_bytes() != b""
        assert np.array_equal(read_array(tmp_path / f"r0_{index}_labels.tif"),
                              read_array(tmp_path / f"r1_{index}_labels.tif"))
