"""The one place where QGIS enums that moved between QGIS 3 and QGIS 4 are resolved.

QGIS 3.30-3.36 moved many enums from their classes into ``Qgis`` as scoped enums (``QgsProcessing.TypeVectorPolygon``
became ``Qgis.ProcessingSourceType.VectorPolygon``, ...); QGIS 4 (Qt 6) drops the old spellings. Each name below is
the QGIS 4 one (``Qgis.<Enum>.<Member>``) when this QGIS has it, else the QGIS 3.22 one, so the plugin runs on
3.22 (old names), 3.40 / 3.44 and 4.x (new names) alike. The classes here only group the values under the new
enum's name: write ``ProcessingSourceType.VectorPolygon`` as QGIS 4 code would write ``Qgis.ProcessingSourceType
.VectorPolygon``. ``tests/engine/test_qt6_ready.py`` refuses the old spellings anywhere else.

Enums that 3.22 already has scoped (``Qgis.MapSettingsFlag``, ``Qgis.MessageLevel``, ``Qgis.DataType``,
``QgsFeatureSink.Flag``, ...) are used directly, in their scoped form, where they are needed.
"""

import qgis.core
from qgis.core import Qgis

RESOLVED = []  # (new name, old name, value) of every name below, for tests/algorithms/test_qgis_compat.py


def resolve(new, old):
    """``Qgis.<new>`` (e.g. ``"ProcessingSourceType.VectorPolygon"``) when this QGIS has it, else ``<old>`` looked up
    in qgis.core (e.g. ``"QgsProcessing.TypeVectorPolygon"``)."""
    value = _lookup(Qgis, new)
    if value is None:
        value = _lookup(qgis.core, old)
    if value is None:
        raise AttributeError(f"this QGIS has neither Qgis.{new} nor {old}")
    RESOLVED.append((new, old, value))
    return value


def _lookup(value, dotted):
    for name in dotted.split("."):
        value = getattr(value, name, None)
    return value


def has_qgis4_enums():
    """Whether this QGIS has the QGIS 4 (``Qgis.Processing*``, 3.36 and later) names."""
    return hasattr(Qgis, "ProcessingSourceType")


class ProcessingSourceType:  # Qgis.ProcessingSourceType (3.36); QgsProcessing.SourceType before
    Vector = resolve("ProcessingSourceType.Vector", "QgsProcessing.TypeVector")
    VectorPolygon = resolve("ProcessingSourceType.VectorPolygon", "QgsProcessing.TypeVectorPolygon")


class ProcessingParameterFlag:  # Qgis.ProcessingParameterFlag (3.36); QgsProcessingParameterDefinition.Flag before
    Advanced = resolve("ProcessingParameterFlag.Advanced", "QgsProcessingParameterDefinition.FlagAdvanced")
    Optional = resolve("ProcessingParameterFlag.Optional", "QgsProcessingParameterDefinition.FlagOptional")


class ProcessingNumberParameterType:  # Qgis.ProcessingNumberParameterType (3.36); QgsProcessingParameterNumber.Type
    Integer = resolve("ProcessingNumberParameterType.Integer", "QgsProcessingParameterNumber.Integer")
    Double = resolve("ProcessingNumberParameterType.Double", "QgsProcessingParameterNumber.Double")


class ProcessingFileParameterBehavior:  # Qgis.ProcessingFileParameterBehavior (3.36); QgsProcessingParameterFile
    File = resolve("ProcessingFileParameterBehavior.File", "QgsProcessingParameterFile.File")
    Folder = resolve("ProcessingFileParameterBehavior.Folder", "QgsProcessingParameterFile.Folder")


class ProcessingFeatureSourceFlag:  # Qgis.ProcessingFeatureSourceFlag (3.36); QgsProcessingFeatureSource.Flag
    SkipGeometryValidityChecks = resolve("ProcessingFeatureSourceFlag.SkipGeometryValidityChecks",
                                         "QgsProcessingFeatureSource.FlagSkipGeometryValidityChecks")


class WkbType:  # Qgis.WkbType (3.30); QgsWkbTypes.Type before
    NoGeometry = resolve("WkbType.NoGeometry", "QgsWkbTypes.NoGeometry")
    MultiPolygon = resolve("WkbType.MultiPolygon", "QgsWkbTypes.MultiPolygon")


class GeometryType:  # Qgis.GeometryType (3.30); QgsWkbTypes.GeometryType before
    Polygon = resolve("GeometryType.Polygon", "QgsWkbTypes.PolygonGeometry")


class CrsWktVariant:  # Qgis.CrsWktVariant (3.36); QgsCoordinateReferenceSystem.WktVariant before
    PreferredGdal = resolve("CrsWktVariant.PreferredGdal", "QgsCoordinateReferenceSystem.WKT_PREFERRED_GDAL")
