"""The same pixels: hashes of every algorithm's outputs on the bundled rasters, recorded from main.

Any change to the engine that alters one output pixel (a label, a feature value, a composite colour, a row of
the statistics table) fails here. The hashes below were computed by

    source scripts/env.sh && python tests/engine/test_pixel_identity.py

which runs the same cases and prints the ``HASHES`` dictionary to paste here. Only paste new hashes for a change
that is meant to change results, and say so in the commit.

Each hash is a SHA-256 of the array's dtype, shape and bytes (for the table: of its rows as text), so it does
not depend on file compression, metadata or timestamps. The CNN hashes are those of ONNX Runtime's float
kernels on the machine they were recorded on (onnxruntime 1.32, x86-64 with AVX-512): another ONNX Runtime
version or CPU family may round embeddings differently.
"""

import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr

if __name__ == "__main__":  # the helper command: run as a script, next to tests/helpers.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import DUBAI_IMAGES, KAMPALA, NAIP, ROOT, SWISS  # noqa: E402

pytestmark = pytest.mark.slow

SHIPPED = ROOT / "onnx_models" / "student_s4_v1.onnx"
DUBAI = sorted(DUBAI_IMAGES.glob("*.jpg"))[3]

HASHES = {
    "blur_cnn_naip": "2c8694c7767ed51be081506e495d90da5f7e4846c7e25bbd1830f8ac0515684e",
    "blur_kmeans_kampala": "29c746bfb4e5de3715084b9ae87f9de7b9c81a5e2fa96784ad590ce4f1f6e778",
    "cnn_dubai": "ec19fe635d31f79e7ca1942aca7e80bc0d790cd48eb1eb17f35d1b088be7a0cd",
    "cnn_kampala": "6d3d6ab2e6807ba59488c4afed74785562e03def0e0d1291baa0ca8cf8592385",
    "cnn_kampala_features": "b20d441df5f277738a608ef2a310f549b7a8656205760f03457ce483df1b57bc",
    "cnn_naip": "557985f8c472d5f7046b28bb65e5766eddc01729b9c018ec8edc01012469f825",
    "cnn_swiss": "e42edbabded863bcbe4c080aecbcd97f806a4d58eb7f4851b133192b349b28b6",
    "kmeans_dubai": "820e9a1ec8bad54dbac5abb98263bd255dfd9741a7a1623acadc377dad8fd18b",
    "kmeans_kampala": "6ab97ea4c6b820aaee4ef80927af9660efc23b834e4b47b9b19a6e1cdc29180d",
    "kmeans_kampala_features": "0b5caeed682e3c66952e3491a45e1f1a04f147c217a42736929cca0acea001c6",
    "kmeans_naip": "d133edbe939165cb9d361b5f81360916ffd7a5338cc76c1d7eac260f20866b0d",
    "kmeans_swiss": "1065c7a9c4c99a58a4d7549b999dd32f38ea8e770b2671cb9baa4a3268cee47b",
    "knn_cnn_naip": "984355b1d0964f3f7a62831b43c04462246493d56dcddb27091546e331776b99",
    "knn_kmeans_kampala": "a416ed14e026222cbaf5924184ec1c4c769d420d95a13907a6e4f7375bf91032",
    "render_kampala": "d7bd21e503f26f684d3671505e231d77a19e2d5a9b0d859d3c17be7c375bec7c",
    "render_kampala_composite": "1a471cac92184f9ffac901d9e0ec1a4e58391b79e3b78905c32fd27a1e20f65a",
    "render_kampala_quicklook": "5f6108f0d00d57bae4648005cd9a84dbb3fa4379a050fc8f7796747e5d509a0c",
    "render_naip": "94f628bea832b906238addb0550b96d184b22fc9fe90cc7c82af9d1b6713f4af",
    "statistics_kampala": "255df06fa92cf4a273a98e788004deda7b77c64f6f8a12ac2fd0004e0ee769fd",
    "statistics_naip": "ddb1f11813d7bf55e7fc755c207b80d5600c9f155d319a0da06cdafb02770670",
}


def array_hash(array):
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def raster_hash(path):
    """Hash of every band's pixels (and of the colour table of band 1, the style the pixels are shown with)."""
    dataset = gdal.Open(str(path))
    digest = hashlib.sha256(array_hash(dataset.ReadAsArray()).encode())
    table = dataset.GetRasterBand(1).GetRasterColorTable()
    if table is not None:
        digest.update(repr([table.GetColorEntry(i) for i in range(table.GetCount())]).encode())
    return digest.hexdigest()


def table_hash(path):
    """Hash of the table's field names and rows, values as text (floats with repr: every bit counts)."""
    dataset = ogr.Open(str(path))
    layer = dataset.GetLayer(0)
    definition = layer.GetLayerDefn()
    rows = [[definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]]
    for feature in layer:
        rows.append([repr(feature.GetField(i)) for i in range(definition.GetFieldCount())])
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def compute(folder):
    """Run every algorithm's engine call on the bundled rasters (as the algorithms call them) into ``folder``;
    returns {case: hash}."""
    from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn
    from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
    from map_segmenter.engine.steps.blur import blur_labels
    from map_segmenter.engine.steps.knn_refine import refine_knn
    from map_segmenter.engine.steps.render import render_labels
    from map_segmenter.engine.steps.statistics import segment_statistics

    folder = Path(folder)
    hashes = {}

    def out(name):
        return str(folder / name)

    def record(name, path, kind=raster_hash):
        hashes[name] = kind(path)

    # segmenter:kmeans: defaults; nodata (NAIP, 4 bands, BANDS 4,1,2); many small windows; a JPEG without CRS
    segment_kmeans(str(KAMPALA), out("kmeans_kampala.tif"), features_path=out("kmeans_kampala_features.tif"))
    record("kmeans_kampala", out("kmeans_kampala.tif"))
    record("kmeans_kampala_features", out("kmeans_kampala_features.tif"))
    segment_kmeans(str(NAIP), out("kmeans_naip.tif"), segments=5, bands=[4, 1, 2], seed=3)
    record("kmeans_naip", out("kmeans_naip.tif"))
    segment_kmeans(str(SWISS), out("kmeans_swiss.tif"), segments=6, block=8, memory_mb=1)
    record("kmeans_swiss", out("kmeans_swiss.tif"))
    segment_kmeans(str(DUBAI), out("kmeans_dubai.tif"), segments=5)
    record("kmeans_dubai", out("kmeans_dubai.tif"))

    # segmenter:cnn with the shipped model: defaults; nodata; small tiles in odd batches; nearest upsampling
    segment_cnn(str(KAMPALA), out("cnn_kampala.tif"), str(SHIPPED), features_path=out("cnn_kampala_features.tif"))
    record("cnn_kampala", out("cnn_kampala.tif"))
    record("cnn_kampala_features", out("cnn_kampala_features.tif"))
    segment_cnn(str(NAIP), out("cnn_naip.tif"), str(SHIPPED), segments=5, seed=1,
                features_path=out("cnn_naip_features.tif"))
    record("cnn_naip", out("cnn_naip.tif"))
    segment_cnn(str(SWISS), out("cnn_swiss.tif"), str(SHIPPED), segments=6, tile_size=100, batch_size=3, threads=1,
                memory_mb=8)
    record("cnn_swiss", out("cnn_swiss.tif"))
    segment_cnn(str(DUBAI), out("cnn_dubai.tif"), str(SHIPPED), segments=5, upsample="nearest")
    record("cnn_dubai", out("cnn_dubai.tif"))

    # segmenter:blur on both kinds of labels
    blur_labels(out("kmeans_kampala.tif"), out("blur_kmeans_kampala.tif"))
    record("blur_kmeans_kampala", out("blur_kmeans_kampala.tif"))
    blur_labels(out("cnn_naip.tif"), out("blur_cnn_naip.tif"), method="gaussian", strength="high", iterations=2)
    record("blur_cnn_naip", out("blur_cnn_naip.tif"))

    # segmenter:knn_refine on K-Means block features and on CNN embeddings (with nodata)
    refine_knn(out("kmeans_kampala.tif"), out("kmeans_kampala_features.tif"), out("knn_kmeans_kampala.tif"))
    record("knn_kmeans_kampala", out("knn_kmeans_kampala.tif"))
    refine_knn(out("cnn_naip.tif"), out("cnn_naip_features.tif"), out("knn_cnn_naip.tif"), neighbors=5, seed=2)
    record("knn_cnn_naip", out("knn_cnn_naip.tif"))

    # segmenter:render: mean colours with composite and quicklook; a ramp
    render_labels(out("cnn_kampala.tif"), out("render_kampala.tif"), palette="mean_colour", image_path=str(KAMPALA),
                  opacity=0.6, composite_path=out("render_kampala_composite.tif"),
                  quicklook_path=out("render_kampala_quicklook.png"))
    record("render_kampala", out("render_kampala.tif"))
    record("render_kampala_composite", out("render_kampala_composite.tif"))
    record("render_kampala_quicklook", out("render_kampala_quicklook.png"))
    render_labels(out("kmeans_naip.tif"), out("render_naip.tif"), palette="ramp")
    record("render_naip", out("render_naip.tif"))

    # segmenter:statistics: the table, with the image's colour statistics
    segment_statistics(out("kmeans_kampala.tif"), out("statistics_kampala.csv"), image_path=str(KAMPALA))
    record("statistics_kampala", out("statistics_kampala.csv"), table_hash)
    segment_statistics(out("knn_cnn_naip.tif"), out("statistics_naip.gpkg"))
    record("statistics_naip", out("statistics_naip.gpkg"), table_hash)
    return hashes


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    return compute(tmp_path_factory.mktemp("pixel_identity"))


def test_every_case_is_recorded(computed):
    assert sorted(computed) == sorted(HASHES)


@pytest.mark.parametrize("case", sorted(HASHES))
def test_same_pixels_as_main(computed, case):
    assert computed[case] == HASHES[case], (
        f"{case}: the output pixels changed (see this file's docstring for how the hashes were recorded)")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        result = compute(scratch)
    print("HASHES = {")
    for name in sorted(result):
        print(f'    "{name}": "{result[name]}",')
    print("}")
