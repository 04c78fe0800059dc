"""GUI only: open a copy of a shipped model in the Graphical Modeler, from the Toolbox's context menu
(right-click the model) and from the Plugins menu. Imported by ``initGui``, never by ``qgis_process``."""

from processing.gui.ContextAction import ContextAction
from processing.gui.ProviderActions import ProviderContextMenuActions
from processing.modeler.ModelerDialog import ModelerDialog
from qgis.PyQt.QtCore import QCoreApplication

from .shipped_models import ShippedModel


def edit_copy_in_modeler(model):
    """Open ``model`` (a ShippedModel) as a new, unsaved model in the Graphical Modeler; returns the dialog."""
    dialog = ModelerDialog.create(model.editable_copy())  # create() keeps the dialog alive while it is shown
    dialog.show()
    dialog.activate()
    return dialog


class EditShippedModelAction(ContextAction):
    def __init__(self):
        super().__init__()
        self.name = QCoreApplication.translate("EditShippedModelAction", "Edit a Copy in the Graphical Modeler…")

    def isEnabled(self):  # noqa: N802 - Processing API
        return isinstance(self.itemData, ShippedModel)

    def execute(self):
        edit_copy_in_modeler(self.itemData)


class ModelEditing:
    """Registers the Toolbox action while the plugin is loaded."""

    def __init__(self):
        self.actions = [EditShippedModelAction()]
        ProviderContextMenuActions.registerProviderContextMenuActions(self.actions)

    def unload(self):
        ProviderContextMenuActions.deregisterProviderContextMenuActions(self.actions)
