"""What a desktop user meets, tested in the real QGIS GUI classes (offscreen): algorithm dialogs, results loaded
into the project, the shipped model in the Graphical Modeler, the Processing Toolbox and the plugin's metadata."""

import configparser
import json
import os
import re
import time

import pytest
from onnx_builders import SHIPPED
from osgeo import gdal
from qgis.core import QgsApplication, QgsPalettedRasterRenderer, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from map_segmenter.algorithms.paths import layer_path
from map_segmenter.engine.rasters.labels import read_metadata

from helpers import ROOT

K = 5
AUTOMATIC_K = 5  # the K SEGMENTS = 0 chooses on the Kampala crop


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, kampala_crop, processing_run):
    """A K-Means segmentation with its descriptors: the inputs of the post-processing steps."""
    folder = tmp_path_factory.mktemp("gui_inputs")
    result = processing_run("segmenter:kmeans", {"INPUT": kampala_crop, "SEGMENTS": K,
                                                 "OUTPUT": str(folder / "labels.tif"),
                                                 "FEATURES": str(folder / "features.tif")})
    return {"image": kampala_crop, "labels": result["OUTPUT"], "features": result["FEATURES"]}


def wait_for(condition, timeout=120):
    """Let QGIS work (events, its task manager) until ``condition()`` holds or ``timeout`` s pass; returns it.
    Dialogs run algorithms in background tasks (the batch dialog too, since QGIS 3.26)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    return condition()


def run_in_dialog(algorithm_id, parameters, timeout=120, log=None):
    """Fill the algorithm's own dialog and press Run, as a user does; returns the results when it finishes (and
    saves the dialog's log, as its Save Log button does, to ``log`` when given)."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    dialog = AlgorithmDialog(QgsApplication.processingRegistry().createAlgorithmById(algorithm_id))
    dialog.setParameters(parameters)
    finished = []
    dialog.algorithmFinished.connect(lambda ok, results: finished.append((ok, results)))
    dialog.runAlgorithm()
    wait_for(lambda: finished, timeout)
    assert finished and finished[0][0], f"{algorithm_id} did not finish in the dialog"
    if log:
        dialog.saveLogToFile(str(log))
    dialog.close()
    return finished[0][1]


def layers_from(path):
    return [layer for layer in QgsProject.instance().mapLayers().values()
            if layer_path(layer) == str(path)]


def loaded_layer(path):
    layers = layers_from(path)
    assert len(layers) == 1, f"{path} was not loaded into the project"
    return layers[0]


def assert_styled_as_labels(layer, names=None):
    """K classes named as in the raster's metadata and coloured as its colour table; 0 (nodata) is no class."""
    dataset = gdal.Open(layer.source())
    metadata = read_metadata(dataset)
    table = dataset.GetRasterBand(1).GetRasterColorTable()
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    classes = renderer.classes()
    assert [c.value for c in classes] == list(range(1, metadata["k"] + 1))
    assert [c.label for c in classes] == (names or metadata["names"])
    assert [c.color.getRgb()[:3] for c in classes] == [table.GetColorEntry(v)[:3] for v in range(1, metadata["k"] + 1)]
    assert dataset.GetRasterBand(1).GetNoDataValue() == 0


def dialog_cases(inputs, tmp_path):
    return {
        "kmeans": {"INPUT": inputs["image"], "SEGMENTS": K, "OUTPUT": str(tmp_path / "kmeans.tif")},
        "cnn": {"INPUT": inputs["image"], "MODEL_PATH": str(SHIPPED), "SEGMENTS": K,
                "OUTPUT": str(tmp_path / "cnn.tif")},
        "blur": {"INPUT": inputs["labels"], "OUTPUT": str(tmp_path / "blur.tif")},
        "knn_refine": {"LABELS": inputs["labels"], "FEATURES": inputs["features"],
                       "OUTPUT": str(tmp_path / "knn_refine.tif")},
        "render": {"INPUT": inputs["labels"], "NAMES": "Roofs, Roads, Soil, Grass, Trees",
                   "OUTPUT": str(tmp_path / "render.tif")},
    }


@pytest.mark.parametrize("algorithm", ["kmeans", "cnn", "blur", "knn_refine", "render"])
def test_a_run_from_the_dialog_loads_k_named_classes(qgis_iface, processing_run, inputs, tmp_path, algorithm):
    parameters = dialog_cases(inputs, tmp_path)[algorithm]
    results = run_in_dialog(f"segmenter:{algorithm}", parameters)
    assert results["OUTPUT"] == parameters["OUTPUT"] and results["SEGMENT_COUNT"] == K
    layer = loaded_layer(parameters["OUTPUT"])
    names = ["Roofs", "Roads", "Soil", "Grass", "Trees"] if algorithm == "render" else [
        f"Segment {index}" for index in range(1, K + 1)]
    assert_styled_as_labels(layer, names)
    QgsProject.instance().removeMapLayer(layer.id())


def test_a_batch_run_loads_every_result_styled(qgis_iface, processing_run, inputs, tmp_path):
    """Two rows in the batch dialog, filled as a user does, with "Load layers on completion" ticked."""
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from processing.tools import dataobjects

    dialog = BatchAlgorithmDialog(QgsApplication.processingRegistry().createAlgorithmById("segmenter:blur"))
    dialog.show()  # as a user sees it: QGIS >= 3.26 runs the rows in background tasks that report to its widgets
    panel = dialog.mainWidget()
    panel.addRow()
    context = dataobjects.createContext()
    outputs = [str(tmp_path / f"batch{row}.tif") for row in range(2)]
    for row, (strength, out) in enumerate(zip([0, 2], outputs)):
        panel.wrappers[row][panel.parameter_to_column["INPUT"]].setParameterValue(inputs["labels"], context)
        panel.wrappers[row][panel.parameter_to_column["STRENGTH"]].setParameterValue(strength, context)
        panel.tblParameters.cellWidget(row + 1, panel.parameter_to_column["OUTPUT"]).setValue(out)
    panel.checkLoadLayersOnCompletion.setChecked(True)
    dialog.runAlgorithm()
    wait_for(lambda: all(layers_from(out) for out in outputs) and not QgsApplication.taskManager().countActiveTasks())
    for out in outputs:
        layer = loaded_layer(out)
        assert_styled_as_labels(layer)
        QgsProject.instance().removeMapLayer(layer.id())
    dialog.close()


def test_automatic_k_from_the_dialog_reports_the_chosen_k_and_its_evidence(qgis_iface, processing_run, kampala_crop,
                                                                          tmp_path):
    """SEGMENTS = 0 in the K-Means dialog: SEGMENT_COUNT is the K chosen, the log shows the criterion per K, and the
    loaded layer is styled with that many classes, as the engine run of the same raster gives."""
    from map_segmenter.engine.segmentation import hierarchy
    from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

    out, log = str(tmp_path / "auto.tif"), tmp_path / "log.txt"
    results = run_in_dialog("segmenter:kmeans", {"INPUT": kampala_crop, "SEGMENTS": 0, "OUTPUT": out}, log=log)
    criterion = read_metadata(gdal.Open(out))["criterion"]
    engine = segment_kmeans(kampala_crop, str(tmp_path / "engine.tif"), segments=0)
    assert results["SEGMENT_COUNT"] == criterion["k"] == AUTOMATIC_K
    assert criterion == json.loads(json.dumps(engine.criterion))
    assert [k for k, _ in criterion["values"]] == list(range(2, 13))
    assert hierarchy.evidence_text(criterion) in log.read_text()
    layer = loaded_layer(out)
    assert_styled_as_labels(layer, [f"Segment {index}" for index in range(1, AUTOMATIC_K + 1)])
    QgsProject.instance().removeMapLayer(layer.id())


def test_the_statistics_report_of_automatic_k_draws_the_criterion_chart(qgis_iface, processing_run, kampala_crop,
                                                                         tmp_path):
    """The statistics dialog's HTML report of an automatic-K raster: its second chart, the criterion, drawn by QtSvg
    (Qt 5 and 6) at its own size: a 22 px bar and a 6 px gap per K in 2..12, the chosen K's bar (the 4th, K = 5)
    alone in dark blue, the others light, the threshold dashed red."""
    import re

    from qgis.PyQt.QtCore import QByteArray
    from qgis.PyQt.QtGui import QColor, QImage, QPainter
    from qgis.PyQt.QtSvg import QSvgRenderer

    from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

    labels, report = str(tmp_path / "auto.tif"), tmp_path / "report.html"
    segment_kmeans(kampala_crop, labels, segments=0)
    run_in_dialog("segmenter:statistics", {"INPUT": labels, "OUTPUT": str(tmp_path / "table.csv"),
                                           "REPORT": str(report)})
    page = report.read_text()
    charts = re.findall(r"<svg\b.*?</svg>", page, re.S)
    assert len(charts) == 2 and f"K = {AUTOMATIC_K}." in page
    renderer = QSvgRenderer(QByteArray(charts[1].encode()))
    assert renderer.isValid() and (renderer.defaultSize().width(), renderer.defaultSize().height()) == (840, 11 * 28)
    picture = QImage(renderer.defaultSize(), QImage.Format.Format_ARGB32)
    picture.fill(QColor("white"))
    painter = QPainter(picture)
    renderer.render(painter)
    painter.end()
    rows = {}
    for y in range(picture.height()):
        for x in range(picture.width()):
            rows.setdefault(picture.pixelColor(x, y).name(), set()).add(y)
    chosen = (AUTOMATIC_K - 2) * 28
    # inside its outline (half a pixel of stroke blended into the first and last row) a bar fills 20 rows
    assert sorted(rows["#2b6cb0"]) == list(range(chosen + 1, chosen + 21))
    assert len(rows["#bcd2ea"]) == 10 * 20
    dashed = [name for name in rows if QColor(name).red() - max(QColor(name).green(), QColor(name).blue()) > 60]
    assert dashed and all(len(rows[name]) < 11 * 28 for name in dashed)  # the threshold, drawn with gaps
    for layer in layers_from(str(tmp_path / "table.csv")):
        QgsProject.instance().removeMapLayer(layer.id())


def test_run_and_load_results_styles_the_label_output(qgis_iface, processing_run, inputs, tmp_path):
    import processing

    out = str(tmp_path / "loaded.tif")
    processing.runAndLoadResults("segmenter:blur", {"INPUT": inputs["labels"], "OUTPUT": out})
    layer = loaded_layer(out)
    assert_styled_as_labels(layer)
    QgsProject.instance().removeMapLayer(layer.id())


def test_the_shipped_model_loads_its_result_styled(qgis_iface, processing_run, kampala_crop, tmp_path):
    import processing

    out = str(tmp_path / "model.tif")
    processing.runAndLoadResults("segmenter:segment_smooth_refine_render",
                                 {"INPUT": kampala_crop, "SEGMENTS": K, "render:Segments": out})
    layer = loaded_layer(out)
    assert_styled_as_labels(layer)
    QgsProject.instance().removeMapLayer(layer.id())


def test_statistics_from_the_dialog_loads_the_table_and_the_polygons_styled(qgis_iface, processing_run, inputs,
                                                                           tmp_path):
    from qgis.core import QgsCategorizedSymbolRenderer

    from map_segmenter.algorithms.qgis_compat import WkbType
    from map_segmenter.engine.rasters.labels import read_legend

    parameters = {"INPUT": inputs["labels"], "IMAGE": inputs["image"], "OUTPUT": str(tmp_path / "table.gpkg"),
                  "POLYGONS": str(tmp_path / "polygons.gpkg"), "REPORT": str(tmp_path / "report.html")}
    results = run_in_dialog("segmenter:statistics", parameters)
    assert results["SEGMENT_COUNT"] == K
    table = loaded_layer(parameters["OUTPUT"])
    assert table.wkbType() == WkbType.NoGeometry and table.featureCount() == K
    polygons = loaded_layer(parameters["POLYGONS"])
    renderer = polygons.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    legend = read_legend(inputs["labels"])
    assert [(c.value(), c.label(), c.symbol().color().getRgb()[:3]) for c in renderer.categories()] == [
        (entry.value, entry.name, entry.colour) for entry in legend]
    for layer in (table, polygons):
        QgsProject.instance().removeMapLayer(layer.id())


def test_the_statistics_model_loads_styled_segments_and_polygons(qgis_iface, processing_run, kampala_crop, tmp_path):
    import processing
    from qgis.core import QgsCategorizedSymbolRenderer

    outputs = {"render:Segments": str(tmp_path / "model.tif"), "statistics:Statistics": str(tmp_path / "t.gpkg"),
               "statistics:Polygons": str(tmp_path / "p.gpkg")}
    processing.runAndLoadResults("segmenter:segment_smooth_refine_render_statistics",
                                 {"INPUT": kampala_crop, "SEGMENTS": K, **outputs})
    segments = loaded_layer(outputs["render:Segments"])
    assert_styled_as_labels(segments)
    polygons = loaded_layer(outputs["statistics:Polygons"])
    renderer = polygons.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    assert [c.label() for c in renderer.categories()] == [f"Segment {k}" for k in range(1, K + 1)]
    table = loaded_layer(outputs["statistics:Statistics"])
    for layer in (segments, polygons, table):
        QgsProject.instance().removeMapLayer(layer.id())


def test_a_label_raster_added_without_its_style_gets_its_classes(qgis_iface, processing_run, inputs, tmp_path):
    """Added by code or by another tool with no .qml beside it: the plugin restyles what QGIS draws with 256
    default classes, and leaves a layer the user styled otherwise alone."""
    from map_segmenter.processing_provider.plugin import style_unstyled_label_layers

    copy = tmp_path / "copy.tif"
    gdal.Translate(str(copy), inputs["labels"])
    options = QgsRasterLayer.LayerOptions()
    options.loadDefaultStyle = False
    layer = QgsRasterLayer(str(copy), "copy", "gdal", options)
    assert len(layer.renderer().classes()) == 256  # what QGIS gives a Byte GeoTIFF with a colour table
    style_unstyled_label_layers([layer])
    assert_styled_as_labels(layer)
    photo = QgsRasterLayer(inputs["image"], "photo")
    renderer_before = type(photo.renderer())
    style_unstyled_label_layers([photo])
    assert type(photo.renderer()) is renderer_before


def test_dialogs_open_with_their_defaults_and_per_parameter_help(qgis_iface, processing_run):
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    registry = QgsApplication.processingRegistry()
    for algorithm in registry.providerById("segmenter").algorithms():
        dialog = AlgorithmDialog(algorithm.create())
        wrappers = dialog.mainWidget().wrappers
        for definition in algorithm.parameterDefinitions():
            if definition.isDestination() or definition.defaultValue() is None:
                continue
            shown = wrappers[definition.name()].parameterValue()
            assert shown == definition.defaultValue(), (algorithm.id(), definition.name(), shown)
        dialog.close()
        if algorithm.name() in SHIPPED_MODELS:
            continue
        for definition in algorithm.parameterDefinitions():
            assert definition.help(), f"{algorithm.id()} {definition.name()} has no help"


SHIPPED_MODELS = {
    "segment_smooth_refine_render": ["Refine by nearest neighbours", "Render segments", "Segment (K-Means)",
                                     "Smooth segments"],
    "segment_smooth_refine_render_statistics": ["Refine by nearest neighbours", "Render segments",
                                                "Segment (K-Means)", "Segment statistics and polygons",
                                                "Smooth segments"],
}


@pytest.mark.parametrize("algorithm_id", ["kmeans", "cnn", "blur", "knn_refine", "render", "statistics",
                                          *SHIPPED_MODELS])
def test_help_reads_like_qgis(processing_run, algorithm_id):
    """The side help names parameters by the labels the form shows, never by their ids, in plain text; every
    algorithm shows the provider's icon; choices are words, not code values."""
    algorithm = QgsApplication.processingRegistry().algorithmById(f"segmenter:{algorithm_id}")
    text = algorithm.shortHelpString()
    assert not re.search(r"<[a-zA-Z/][^>]*>", text)
    text = re.sub(r"From qgis_process[^\n]*", "", text)  # the command line names parameters by id, rightly
    for definition in algorithm.parameterDefinitions():
        label = definition.description().split(" (")[0]
        if not definition.isDestination() or algorithm_id not in SHIPPED_MODELS:
            assert label in text, f"{label!r} is not in the help of {algorithm_id}"
        assert not re.search(rf"\b{definition.name()}\b", text), \
            f"{algorithm_id}'s help names {definition.name()} by its id"
    assert "predecessor" not in text
    assert os.path.samefile(algorithm.svgIconPath(), ROOT / "icon.svg") and not algorithm.icon().isNull()


def test_output_names_do_not_shadow_inputs(processing_run):
    for algorithm in QgsApplication.processingRegistry().providerById("segmenter").algorithms():
        inputs = {definition.name() for definition in algorithm.parameterDefinitions()
                  if not definition.isDestination()}
        outputs = {output.name() for output in algorithm.outputDefinitions()}
        destinations = {definition.name() for definition in algorithm.destinationParameterDefinitions()}
        assert not (outputs - destinations) & inputs, algorithm.id()


def test_enum_choices_are_readable(processing_run):
    registry = QgsApplication.processingRegistry()
    assert registry.algorithmById("segmenter:blur").parameterDefinition("METHOD").options() == [
        "Majority", "Gaussian-weighted majority"]
    assert registry.algorithmById("segmenter:blur").parameterDefinition("STRENGTH").options() == [
        "Low", "Medium", "High"]
    model = registry.algorithmById("segmenter:segment_smooth_refine_render")
    assert model.parameterDefinition("STRENGTH").options() == ["Low", "Medium", "High"]


def toolbox_groups():
    from qgis.gui import QgsProcessingToolboxModel

    model = QgsProcessingToolboxModel(None, QgsApplication.processingRegistry())
    provider = model.indexForProvider("segmenter")
    assert provider.isValid()
    return [model.data(model.index(row, 0, provider)) for row in range(model.rowCount(provider))]


def test_the_toolbox_shows_each_group_once(processing_run):
    assert sorted(toolbox_groups()) == ["Post-processing", "Segmentation"]


@pytest.mark.parametrize("model_id", SHIPPED_MODELS)
def test_the_shipped_model_is_valid_and_readable_in_the_modeler(qgis_iface, processing_run, model_id):
    from processing.modeler.ModelerDialog import ModelerDialog
    from qgis.gui import QgsModelComponentGraphicItem

    shipped = QgsApplication.processingRegistry().algorithmById(f"segmenter:{model_id}")
    dialog = ModelerDialog.create(shipped.editable_copy())
    model = dialog.model()
    for child_id in model.childAlgorithms():
        ok, issues = model.validateChildAlgorithm(child_id)
        assert ok, (child_id, issues)
    ok, issues = model.validate()
    assert ok, issues
    descriptions = sorted(model.childAlgorithm(child_id).description() for child_id in model.childAlgorithms())
    assert descriptions == SHIPPED_MODELS[model_id]
    items = [item for item in dialog.view().scene().items() if isinstance(item, QgsModelComponentGraphicItem)]
    outputs = sum(len(model.childAlgorithm(child_id).modelOutputs()) for child_id in model.childAlgorithms())
    assert len(items) == len(model.parameterComponents()) + len(model.childAlgorithms()) + outputs
    boxes = [item.sceneBoundingRect() for item in items]
    for first in range(len(boxes)):
        for second in range(first + 1, len(boxes)):
            assert not boxes[first].intersects(boxes[second]), (items[first].label(), items[second].label())
    assert model.sourceFilePath() == ""  # saving asks where: the shipped file is never overwritten
    dialog.close()


def test_the_toolbox_offers_to_edit_a_copy_of_the_shipped_model(qgis_iface, processing_run):
    from processing.gui.ProviderActions import ProviderContextMenuActions
    from processing.modeler.ModelerDialog import ModelerDialog

    from map_segmenter.processing_provider.model_editing import EditShippedModelAction, ModelEditing

    editing = ModelEditing()
    try:
        actions = [a for a in ProviderContextMenuActions.actions if isinstance(a, EditShippedModelAction)]
        assert len(actions) == 1
        registry = QgsApplication.processingRegistry()
        action = actions[0]
        action.setData(registry.algorithmById("segmenter:kmeans"), None)
        assert not action.isEnabled()
        shipped = registry.algorithmById("segmenter:segment_smooth_refine_render")
        action.setData(shipped, None)
        assert action.isEnabled() and action.name == "Edit a Copy in the Graphical Modeler…"
        before = len(ModelerDialog.dlgs)
        action.execute()
        opened = ModelerDialog.dlgs[before:]
        assert len(opened) == 1 and opened[0].isVisible()
        assert opened[0].model().sourceFilePath() == ""
        assert sorted(opened[0].model().childAlgorithms()) == sorted(shipped.childAlgorithms())
        opened[0].close()
    finally:
        editing.unload()
    assert not [a for a in ProviderContextMenuActions.actions if isinstance(a, EditShippedModelAction)]


def test_plugin_metadata_is_complete_for_the_plugin_repository():
    metadata = configparser.ConfigParser()
    metadata.read(ROOT / "metadata.txt", encoding="utf-8")
    general = metadata["general"]
    assert general["category"] == "Raster"
    assert not QIcon(str(ROOT / general["icon"])).isNull()
    assert "example.org" not in general["email"]
    for key in ("about", "changelog", "tags", "homepage", "tracker", "repository"):
        assert general.get(key, "").strip(), key


def test_progress_logs_each_stage_once(processing_run, tmp_path, kampala_crop):
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.lines = []

        def setProgressText(self, text):  # noqa: N802 - QGIS API
            self.lines.append(text)

    feedback = Recorder()
    processing_run("segmenter:kmeans", {"INPUT": kampala_crop, "SEGMENTS": 4, "MEMORY_MB": 2,
                                        "OUTPUT": str(tmp_path / "k.tif")}, context=QgsProcessingContext(),
                   feedback=feedback)
    assert len(feedback.lines) == len(set(feedback.lines)), feedback.lines
    assert "Describing blocks" in feedback.lines
    assert not [line for line in feedback.lines if "windows)" in line]


def test_translations_load_for_the_users_locale(qgis_app):
    from map_segmenter.processing_provider.plugin import load_translator

    assert (ROOT / "i18n" / "map_segmenter.ts").exists()
    assert load_translator("xx_YY") is None
    translator = load_translator("de_DE")
    try:
        assert translator is not None
        assert QCoreApplication.translate("SegmenterAlgorithm", "Random seed") == "Zufallsstartwert"
    finally:
        QCoreApplication.removeTranslator(translator)
    assert QCoreApplication.translate("SegmenterAlgorithm", "Random seed") == "Random seed"


def test_cnn_model_list_offers_only_real_models(processing_run):
    definition = QgsApplication.processingRegistry().algorithmById("segmenter:cnn").parameterDefinition("MODEL")
    assert definition.options() == ["student_s4_v1"]


def test_the_translation_template_holds_every_string_of_the_code(tmp_path):
    """i18n/map_segmenter.ts is what pylupdate5 extracts from the code today (scripts/update_translations.sh)."""
    import subprocess
    import xml.etree.ElementTree as ElementTree

    sources = subprocess.run(["git", "ls-files", "algorithms/*.py", "processing_provider/*.py"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["pylupdate5", "-noobsolete", *sources, "-ts", str(tmp_path / "fresh.ts")], cwd=ROOT,
                   check=True, capture_output=True)

    def messages(path):
        root = ElementTree.parse(path).getroot()
        return sorted((context.findtext("name"), message.findtext("source"))
                      for context in root.iter("context") for message in context.iter("message"))

    fresh = messages(tmp_path / "fresh.ts")
    assert len(fresh) > 100
    assert messages(ROOT / "i18n" / "map_segmenter.ts") == fresh
