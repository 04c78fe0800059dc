"""Regenerate docs/screenshots/statistics_report_automatic_k.png: segmenter:statistics' HTML report of a run with
SEGMENTS = 0 (automatic K), drawn by Qt and grabbed.

    source scripts/env.sh && xvfb-run -a -s "-screen 0 1280x1024x24" python docs/make_report_screenshot.py

segmenter:kmeans (SEGMENTS = 0) and segmenter:statistics (their engine calls, as docs/make_statistics_figure.py
makes its figure) run on that figure's 1024 px crop of the Kampala sample. The page is shown in a QTextBrowser (Qt's
rich text engine), its inline SVG charts drawn by QtSvg at their own size: both are in Qt 5 and Qt 6 (QtWebKit, which
QGIS 3 has, is not in Qt 6; QGIS itself opens HTML outputs in the system's browser). The view is 1000 px wide and
tall enough for the area chart and the criterion chart ("How K was chosen").
"""

import re
import sys
import tempfile
from pathlib import Path

from make_statistics_figure import crop
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QByteArray, QUrl
from qgis.PyQt.QtGui import QColor, QImage, QPainter, QTextDocument
from qgis.PyQt.QtSvg import QSvgRenderer
from qgis.PyQt.QtWidgets import QTextBrowser

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "screenshots" / "statistics_report_automatic_k.png"
WIDTH, HEIGHT = 1000, 760
CHART = re.compile(r"<svg\b.*?</svg>", re.S)


def show_report(view, html):
    """``html`` in ``view``, each inline SVG chart drawn by QtSvg into an image resource of the view's document."""
    charts = CHART.findall(html)
    for number, chart in enumerate(charts):
        renderer = QSvgRenderer(QByteArray(chart.encode()))
        image = QImage(renderer.defaultSize(), QImage.Format.Format_ARGB32)
        image.fill(QColor("white"))
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        view.document().addResource(QTextDocument.ResourceType.ImageResource, QUrl(f"chart{number}.png"), image)
    numbers = iter(range(len(charts)))
    view.setHtml(CHART.sub(lambda _: f'<p><img src="chart{next(numbers)}.png"></p>', html))


def main():
    app = QgsApplication([], True)
    app.initQgis()
    from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
    from map_segmenter.engine.steps.statistics import segment_statistics

    with tempfile.TemporaryDirectory() as scratch:
        image = crop(scratch)
        segments = segment_kmeans(image, f"{scratch}/segments.tif", segments=0)
        report = Path(scratch) / "report.html"
        segment_statistics(f"{scratch}/segments.tif", f"{scratch}/table.csv", image_path=image,
                           report_path=str(report))
        view = QTextBrowser()
        view.resize(WIDTH, HEIGHT)
        show_report(view, report.read_text())
        view.show()
        for _ in range(20):  # let the view lay out and paint the page before it is grabbed
            app.processEvents()
        TARGET.parent.mkdir(parents=True, exist_ok=True)
        if not view.grab().save(str(TARGET), "PNG"):
            sys.exit(f"could not write {TARGET}")
        print(TARGET, f"K = {segments.criterion['k']}")
        view.close()
    app.exitQgis()


if __name__ == "__main__":
    main()
