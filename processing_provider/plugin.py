"""Plugin glue: registers the provider in initProcessing() (also called by qgis_process), adds the desktop's
pieces in initGui() (model editing, styling of label layers however they are added) and removes all on unload."""

import os

from qgis.core import QgsApplication, QgsProject, QgsSettings
from qgis.PyQt.QtCore import QCoreApplication, QLocale, QTranslator

from .provider import SegmenterProvider

I18N = os.path.join(os.path.dirname(os.path.dirname(__file__)), "i18n")


def user_locale():
    """The language QGIS runs in: its own setting when overridden, else the system's (as QGIS itself decides)."""
    settings = QgsSettings()
    if settings.value("locale/overrideFlag", False, type=bool):
        return settings.value("locale/userLocale", "") or QLocale.system().name()
    return QLocale.system().name()


def load_translator(locale=None):
    """Install the translation for ``locale`` (e.g. de_CH, then de) when the plugin ships one; None otherwise."""
    locale = locale or user_locale()
    for name in (locale, locale.split("_")[0]):
        path = os.path.join(I18N, f"map_segmenter_{name}.qm")
        if name and os.path.exists(path):
            translator = QTranslator()
            if translator.load(path):
                QCoreApplication.installTranslator(translator)
                return translator
    return None


class MapSegmenterPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.model_editing = None
        self.menu_action = None
        self.translator = load_translator()

    def initProcessing(self):  # noqa: N802 - QGIS API
        if self.provider is None:
            self.provider = SegmenterProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 - QGIS API
        self.initProcessing()
        from .model_editing import ModelEditing  # imports Processing's GUI: desktop only

        self.model_editing = ModelEditing()
        QgsProject.instance().layersAdded.connect(style_unstyled_label_layers)
        if self.iface is not None and self.provider.models:
            try:  # Qt 6 has QAction in QtGui; qgis.PyQt.QtGui offers it on Qt 5 too from QGIS 3.34
                from qgis.PyQt.QtGui import QAction
            except ImportError:  # QGIS 3.22 - 3.32
                from qgis.PyQt.QtWidgets import QAction

            from .model_editing import edit_copy_in_modeler

            model = self.provider.models[0]
            self.menu_action = QAction(self.provider.icon(), QCoreApplication.translate(
                "MapSegmenterPlugin", "Edit a Copy of “{}” in the Graphical Modeler…").format(model.displayName()),
                self.iface.mainWindow())
            self.menu_action.triggered.connect(lambda: edit_copy_in_modeler(model))
            self.iface.addPluginToMenu(self.provider.name(), self.menu_action)

    def unload(self):
        if self.menu_action is not None:
            self.iface.removePluginMenu(self.provider.name(), self.menu_action)
            self.menu_action = None
        if self.model_editing is not None:
            QgsProject.instance().layersAdded.disconnect(style_unstyled_label_layers)
            self.model_editing.unload()
            self.model_editing = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.translator is not None:
            QCoreApplication.removeTranslator(self.translator)
            self.translator = None


def style_unstyled_label_layers(layers):
    """Label rasters of ours that arrive with QGIS's default 256-class palette (no .qml beside them, or loaded by
    another plugin's code) get their K named classes; layers styled otherwise are left alone."""
    from ..algorithms.styling import apply_label_style, is_unstyled_label_layer

    for layer in layers:
        if is_unstyled_label_layer(layer):
            apply_label_style(layer)
