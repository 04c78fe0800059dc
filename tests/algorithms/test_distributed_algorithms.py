"""SCHEDULER through processing.run: the four steps and the shipped model on a real Dask cluster (a `dask
scheduler` and two `dask worker` processes) write the same files as without it (a scheduler that does not answer:
tests/cli/test_distributed_cli.py)."""

import hashlib

import numpy as np
import pytest
from qgis.core import QgsApplication

from helpers import ROOT, read_array

MODEL_FILE = str(ROOT / "onnx_models" / "student_s4_v1.onnx")


def digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def twice(processing_run, algorithm, parameters, folder, cluster, outputs=("OUTPUT",), kinds=()):
    """Run without and with SCHEDULER; assert every output file is byte-identical and that tasks of each of
    ``kinds`` ran on the workers; return the two results."""
    results = []
    for where, scheduler in (("local", ""), ("cluster", cluster.address)):
        files = {name: str(folder / f"{where}_{name.lower().replace(':', '_')}.tif") for name in outputs}
        before = {kind: sum(cluster.tasks_run(kind).values()) for kind in kinds}
        results.append(processing_run(algorithm, {**parameters, **files, "SCHEDULER": scheduler}))
        ran = {kind: sum(cluster.tasks_run(kind).values()) - before[kind] for kind in kinds}
        assert all(ran.values()) if scheduler else not any(ran.values()), (where, ran)
    for name in outputs:
        local, remote = folder / f"local_{name.lower().replace(':', '_')}.tif", \
            folder / f"cluster_{name.lower().replace(':', '_')}.tif"
        np.testing.assert_array_equal(read_array(local), read_array(remote))
        assert digest(local) == digest(remote), name
    return results


@pytest.mark.parametrize("algorithm", ["kmeans", "cnn", "blur", "knn_refine", "merge", "render", "statistics"])
def test_scheduler_is_an_optional_advanced_string(processing_run, algorithm):
    from map_segmenter.algorithms.qgis_compat import ProcessingParameterFlag

    definition = QgsApplication.processingRegistry().algorithmById(f"segmenter:{algorithm}").parameterDefinition(
        "SCHEDULER")
    assert definition.type() == "string" and definition.flags() & ProcessingParameterFlag.Optional
    assert definition.flags() & ProcessingParameterFlag.Advanced
    assert "tcp://" in definition.help()


def test_the_steps_on_the_cluster_equal_local_runs(processing_run, dask_cluster, tmp_path, kampala_crop):
    kmeans = twice(processing_run, "segmenter:kmeans", {"INPUT": kampala_crop, "SEGMENTS": 5, "MEMORY_MB": 1},
                   tmp_path, dask_cluster, ("OUTPUT", "FEATURES"),
                   kinds=("descriptors", "label"))
    assert kmeans[0]["SEGMENT_COUNT"] == kmeans[1]["SEGMENT_COUNT"] == 5
    labels, features = kmeans[0]["OUTPUT"], kmeans[0]["FEATURES"]
    blur_folder = tmp_path / "blur"
    blur_folder.mkdir()
    twice(processing_run, "segmenter:blur", {"INPUT": labels, "STRENGTH": 2, "MEMORY_MB": 1}, blur_folder,
          dask_cluster, kinds=("blur",))
    for algorithm, settings, outputs, kinds in (
            ("merge", {"SEGMENTS": 3}, ("OUTPUT",), ("merge",)),
            ("render", {"PALETTE": 1, "IMAGE": kampala_crop}, ("OUTPUT", "COMPOSITE"), ("meancolour", "composite"))):
        folder = tmp_path / algorithm
        folder.mkdir()
        twice(processing_run, f"segmenter:{algorithm}", {"INPUT": labels, "MEMORY_MB": 1, **settings}, folder,
              dask_cluster, outputs, kinds=kinds)
    tables = {}
    for where, scheduler in (("local", ""), ("cluster", dask_cluster.address)):
        tables[where] = tmp_path / f"{where}_statistics.csv"
        result = processing_run("segmenter:statistics", {"INPUT": labels, "IMAGE": kampala_crop, "MEMORY_MB": 1,
                                                         "OUTPUT": str(tables[where]), "SCHEDULER": scheduler})
        assert result["SEGMENT_COUNT"] == 5
    assert tables["local"].read_bytes() == tables["cluster"].read_bytes()
    knn_folder = tmp_path / "knn"
    knn_folder.mkdir()
    twice(processing_run, "segmenter:knn_refine", {"LABELS": labels, "FEATURES": features, "MEMORY_MB": 1},
          knn_folder, dask_cluster, kinds=("scan", "refine"))
    cnn_folder = tmp_path / "cnn"
    cnn_folder.mkdir()
    cnn = twice(processing_run, "segmenter:cnn", {"INPUT": kampala_crop, "MODEL_PATH": MODEL_FILE, "SEGMENTS": 4,
                                                  "TILE_SIZE": 128, "MEMORY_MB": 1}, cnn_folder,
                dask_cluster, kinds=("embed", "compute"))
    assert cnn[0]["SEGMENT_COUNT"] == cnn[1]["SEGMENT_COUNT"] == 4


def test_the_shipped_model_takes_the_scheduler(processing_run, dask_cluster, tmp_path, kampala_crop):
    twice(processing_run, "segmenter:segment_smooth_refine_render",
          {"INPUT": kampala_crop, "SEGMENTS": 5, "STRENGTH": 2}, tmp_path, dask_cluster,
          ("render:Segments",), kinds=("descriptors", "label", "blur", "scan", "refine"))  # all three steps
