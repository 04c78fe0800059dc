"""Graphical Modeler models that ship with the provider (``processing_provider/models/*.model3``)."""

from pathlib import Path

from qgis.core import QgsProcessingModelAlgorithm
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..algorithms.base import ICON, SEGMENTATION

MODELS = Path(__file__).resolve().parent / "models"


class ShippedModel(QgsProcessingModelAlgorithm):
    """A saved model under a stable id: ``segmenter:<file stem>``, whatever its display name."""

    def __init__(self, path):
        super().__init__()
        self._path = Path(path)
        if not self.fromFile(str(self._path)):
            raise ValueError(f"cannot read model {self._path}")

    def name(self):
        return self._path.stem

    def createInstance(self):  # noqa: N802 - QGIS API
        return ShippedModel(self._path)

    def group(self):
        return QCoreApplication.translate("SegmenterAlgorithm", "Segmentation")

    def groupId(self):  # noqa: N802 - QGIS API
        return SEGMENTATION  # the algorithms' group: one "Segmentation" in the Toolbox

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):  # noqa: N802 - QGIS API
        return ICON

    def shortHelpString(self):  # noqa: N802 - QGIS API
        """Plain text like the other algorithms' (QGIS formats a model's help as an HTML page, which
        ``qgis_process help`` prints raw)."""
        help_content = self.helpContent()
        lines = [help_content.get("ALG_DESC", ""), ""]
        for definition in self.parameterDefinitions():
            text = help_content.get(definition.name())
            if text:
                lines.append(f"{definition.description()}: {text}")
        return "\n".join(lines).strip()

    def editable_copy(self):
        """The model as a plain Modeler model with no file: saving it in the Modeler asks where (the user's own
        models), so the shipped file is never overwritten."""
        copy = QgsProcessingModelAlgorithm()
        copy.loadVariant(self.toVariant())
        copy.setSourceFilePath("")
        return copy

    def attach_children(self):
        """Resolve the child algorithms and derive the model's outputs from them.

        A model read while its provider loads cannot see that provider's algorithms yet (QGIS registers a
        provider only after loading it), so this runs again once the provider is registered.
        """
        for child_id in self.childAlgorithms():
            self.childAlgorithm(child_id).reattach()
        self.updateDestinationParameters()


def shipped_models():
    return [ShippedModel(path) for path in sorted(MODELS.glob("*.model3"))]
