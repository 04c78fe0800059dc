"""Regenerate docs/screenshots/statistics_report_automatic_k.png: segmenter:statistics' HTML report of a run with
SEGMENTS = 0 (automatic K), shown in a Qt web view (QtWebKit, QGIS's own HTML engine) and grabbed.

    source scripts/env.sh && xvfb-run -a -s "-screen 0 1280x1024x24" python docs/make_report_screenshot.py

segmenter:kmeans (SEGMENTS = 0) and segmenter:statistics run through processing.run on a 1024 px crop of the
Kampala sample, as a desktop user runs them; the page is drawn at 100 % zoom in a 1000 px wide view, tall enough
for the area chart and the criterion chart ("How K was chosen").
"""

import sys
import tempfile
from pathlib import Path

from osgeo import gdal
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QEventLoop, QTimer, QUrl
from qgis.PyQt.QtWebKitWidgets import QWebView

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "data" / "kampala_oam" / "kampala_oam_z21_mosaic.tif"
XOFF, YOFF, SIZE = 1024, 512, 1024
TARGET = ROOT / "docs" / "screenshots" / "statistics_report_automatic_k.png"
WIDTH, HEIGHT = 1000, 760


def main():
    app = QgsApplication([], True)
    app.initQgis()
    sys.path.append(str(Path(QgsApplication.pkgDataPath()) / "python" / "plugins"))  # Processing, as in QGIS
    import processing
    from processing.core.Processing import Processing

    from map_segmenter.processing_provider.provider import SegmenterProvider

    Processing.initialize()
    provider = SegmenterProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    with tempfile.TemporaryDirectory() as scratch:
        image = f"{scratch}/kampala.tif"
        gdal.Translate(image, str(SOURCE), srcWin=[XOFF, YOFF, SIZE, SIZE])
        segments = processing.run("segmenter:kmeans", {"INPUT": image, "SEGMENTS": 0,
                                                       "OUTPUT": f"{scratch}/segments.tif"})
        report = f"{scratch}/report.html"
        processing.run("segmenter:statistics", {"INPUT": segments["OUTPUT"], "IMAGE": image,
                                                "OUTPUT": f"{scratch}/table.csv", "REPORT": report})
        view = QWebView()
        view.resize(WIDTH, HEIGHT)
        loaded = QEventLoop()
        view.loadFinished.connect(lambda ok: loaded.quit())
        QTimer.singleShot(30_000, loaded.quit)
        view.load(QUrl.fromLocalFile(report))
        view.show()
        loaded.exec_()
        for _ in range(20):  # let the view paint the page before it is grabbed
            app.processEvents()
        TARGET.parent.mkdir(parents=True, exist_ok=True)
        if not view.grab().save(str(TARGET), "PNG"):
            sys.exit(f"could not write {TARGET}")
        print(TARGET, f"K = {segments['SEGMENT_COUNT']}")
        view.close()
    app.exitQgis()


if __name__ == "__main__":
    main()
