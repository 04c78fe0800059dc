"""Regenerate docs/statistics_polygons.png: segmenter:statistics polygons drawn by QGIS over the Kampala sample.

    source scripts/env.sh && python docs/make_statistics_figure.py

The polygons are styled by the same categorised renderer the algorithm gives them when QGIS loads them
(algorithms/styling.py), with a see-through fill and dark outlines, and drawn over the image by QGIS's own map
renderer (offscreen).
"""

import tempfile
from pathlib import Path

from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsMapRendererCustomPainterJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage, QPainter

ROOT = Path(__file__).resolve().parents[1]

SOURCE = ROOT / "data" / "kampala_oam" / "kampala_oam_z21_mosaic.tif"
XOFF, YOFF, SIZE, PIXELS = 1024, 512, 1024, 640
TARGET = ROOT / "docs" / "statistics_polygons.png"


def crop(folder):
    """The figures' 1024 px crop of the Kampala sample, written to ``folder``; its path."""
    image = f"{folder}/image.tif"
    gdal.Translate(image, str(SOURCE), srcWin=[XOFF, YOFF, SIZE, SIZE])
    return image


def main():
    app = QgsApplication([], False)
    app.initQgis()
    from map_segmenter.algorithms.styling import polygon_renderer
    from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
    from map_segmenter.engine.steps.blur import blur_labels
    from map_segmenter.engine.steps.statistics import segment_statistics

    with tempfile.TemporaryDirectory() as scratch:
        image = crop(scratch)
        segment_kmeans(image, f"{scratch}/labels.tif", segments=6, block=4)
        blur_labels(f"{scratch}/labels.tif", f"{scratch}/smooth.tif", strength="medium")
        result = segment_statistics(f"{scratch}/smooth.tif", f"{scratch}/table.gpkg", image_path=image,
                                    polygons_path=f"{scratch}/polygons.gpkg", sieve=64)
        raster = QgsRasterLayer(image, "image")
        polygons = QgsVectorLayer(f"{scratch}/polygons.gpkg", "polygons", "ogr")
        renderer = polygon_renderer([(s.value, s.colour, s.name) for s in result.segments])
        for index, category in enumerate(renderer.categories()):  # the image shows through; outlines stay crisp
            symbol = category.symbol().clone()
            fill = symbol.symbolLayer(0)
            colour = QColor(fill.fillColor())
            colour.setAlpha(110)
            fill.setFillColor(colour)
            fill.setStrokeColor(QColor(20, 20, 20))
            fill.setStrokeWidth(0.3)
            renderer.updateCategorySymbol(index, symbol)
        polygons.setRenderer(renderer)
        settings = QgsMapSettings()
        settings.setLayers([polygons, raster])
        settings.setDestinationCrs(raster.crs())
        settings.setExtent(raster.extent())
        settings.setOutputSize(QSize(PIXELS, PIXELS))
        settings.setBackgroundColor(QColor("white"))
        picture = QImage(QSize(PIXELS, PIXELS), QImage.Format.Format_RGB32)
        picture.fill(QColor("white"))
        painter = QPainter(picture)
        job = QgsMapRendererCustomPainterJob(settings, painter)
        job.start()
        job.waitForFinished()
        painter.end()
        picture.save(str(TARGET), "PNG", 0)  # 0: the strongest compression
        print(TARGET, f"{result.polygon_count} polygons;",
              ", ".join(f"{s.name} {s.share:.1f} %" for s in result.segments))
    app.exitQgis()


if __name__ == "__main__":
    main()
