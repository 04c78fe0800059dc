"""Screenshots for the README, taken in the real QGIS desktop with the plugin loaded (under Xvfb):

    bash scripts/setup.sh && bash scripts/screenshots.sh

writes docs/screenshots/{toolbox,kmeans_dialog,modeler,result}.png. QGIS runs this file with ``--code`` once its
main window is up; the script drives the GUI as a user would (Toolbox search, algorithm dialog, Modeler, a run
loaded into the map), grabs each window and quits QGIS.
"""

import os
import sys
import tempfile
import traceback
from pathlib import Path

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDockWidget, QLineEdit, QTreeView
from qgis.utils import iface

ROOT = Path(os.environ["MAP_SEGMENTER_ROOT"])
OUT = ROOT / "docs" / "screenshots"
IMAGE = ROOT / "data" / "kampala_oam" / "kampala_oam_z21_mosaic.tif"
STEPS = []
KEEP = []  # dialogs stay alive until they are grabbed


def step(function):
    STEPS.append(function)
    return function


def save(widget, name):
    OUT.mkdir(parents=True, exist_ok=True)
    widget.grab().save(str(OUT / f"{name}.png"))
    print(f"screenshot {OUT / name}.png", flush=True)


def show_segments(parameters, name, opacity, extent):
    """Run segmenter:kmeans with ``parameters`` into a temporary ``name``, load its Segments at ``opacity`` over
    the layers already shown, and show ``extent`` of the map."""
    import processing

    out = os.path.join(tempfile.mkdtemp(), name)
    processing.runAndLoadResults("segmenter:kmeans", {**parameters, "OUTPUT": out})
    segments = QgsProject.instance().mapLayersByName("Segments")[0]
    segments.renderer().setOpacity(opacity)
    iface.mapCanvas().setExtent(extent)
    iface.layerTreeView().expandAll()
    iface.mapCanvas().refreshAllLayers()


@step
def result():
    image = QgsRasterLayer(str(IMAGE), "Kampala (OpenAerialMap)")
    QgsProject.instance().addMapLayer(image)
    show_segments({"INPUT": str(IMAGE), "SEGMENTS": 8}, "kampala_segments.tif", 0.65,
                  image.extent().buffered(-image.extent().width() * 0.3))


@step
def result_grab():
    save(iface.mainWindow(), "result")


@step
def basemap():
    """An XYZ basemap (tiles made from the Kampala sample with gdal2tiles, served from disk) segmented over an
    area of the canvas: what a user does with a web basemap."""
    import subprocess

    QgsProject.instance().removeAllMapLayers()
    tiles = tempfile.mkdtemp()
    subprocess.run(["gdal2tiles.py", "--xyz", "-z20", "-w", "none", "-q", str(IMAGE), tiles], check=True)
    uri = f"type=xyz&url=file://{tiles}/{{z}}/{{x}}/{{y}}.png&zmin=20&zmax=20"
    basemap_layer = QgsRasterLayer(uri, "Kampala basemap (XYZ tiles)", "wms")
    QgsProject.instance().addMapLayer(basemap_layer)
    image = QgsRasterLayer(str(IMAGE), "extent")
    area = image.extent().buffered(-image.extent().width() * 0.2)
    extent = f"{area.xMinimum()},{area.xMaximum()},{area.yMinimum()},{area.yMaximum()} [EPSG:3857]"
    show_segments({"INPUT": basemap_layer.id(), "SEGMENTS": 6, "EXTENT": extent}, "basemap_segments.tif", 0.7,
                  image.extent())


@step
def basemap_grab():
    save(iface.mainWindow(), "basemap")


@step
def toolbox():
    dock = iface.mainWindow().findChild(QDockWidget, "ProcessingToolbox")
    dock.show()
    dock.raise_()
    search = dock.findChild(QLineEdit)
    search.setText("segment")
    dock.findChild(QTreeView).expandAll()


@step
def toolbox_grab():
    dock = iface.mainWindow().findChild(QDockWidget, "ProcessingToolbox")
    dock.resize(420, 640)
    save(dock, "toolbox")


@step
def kmeans_dialog():
    import processing

    dialog = processing.createAlgorithmDialog("segmenter:kmeans", {"INPUT": str(IMAGE)})
    dialog.resize(1000, 700)
    dialog.show()
    KEEP.append(dialog)


@step
def kmeans_dialog_grab():
    save(KEEP[-1], "kmeans_dialog")
    KEEP[-1].close()


@step
def modeler():
    from map_segmenter.processing_provider.model_editing import edit_copy_in_modeler

    model = QgsApplication.processingRegistry().algorithmById("segmenter:segment_smooth_refine_render")
    dialog = edit_copy_in_modeler(model)
    dialog.resize(1500, 900)
    KEEP.append(dialog)


@step
def modeler_zoom():
    KEEP[-1].view().fitInView(KEEP[-1].view().scene().itemsBoundingRect().adjusted(-40, -40, 40, 40), 1)


@step
def modeler_grab():
    save(KEEP[-1], "modeler")
    KEEP[-1].close()


def run(index=0):
    if index == len(STEPS):
        QgsApplication.exit(0)
        return
    try:
        STEPS[index]()
    except Exception:  # noqa: BLE001 - report and stop: a screenshot script must not hang QGIS
        traceback.print_exc()
        QgsApplication.exit(1)
        return
    QTimer.singleShot(2500, lambda: run(index + 1))


iface.mainWindow().resize(1600, 1000)
sys.stdout.flush()
QTimer.singleShot(4000, run)
