"""algorithms/qgis_compat.py: the QGIS 4 name of each moved enum where this QGIS has it, the QGIS 3.22 name
otherwise, and either way the value QGIS's own API takes and returns."""

import qgis.core
from qgis.core import Qgis, QgsProcessingParameterNumber, QgsVectorLayer

from map_segmenter.algorithms import qgis_compat


def lookup(value, dotted):
    for name in dotted.split("."):
        value = getattr(value, name, None)
    return value


def test_each_name_is_the_qgis_4_one_when_this_qgis_has_it_else_the_old_one():
    assert len(qgis_compat.RESOLVED) >= 13
    for new, old, value in qgis_compat.RESOLVED:
        newer = lookup(Qgis, new)
        if newer is not None:
            assert value is newer, new
        else:
            assert value == lookup(qgis.core, old), old
        legacy = lookup(qgis.core, old)  # QGIS 3.x has both spellings, and they are the same value
        assert legacy is None or legacy == value, old


def test_qgis_4_names_are_used_from_3_36_on():
    assert qgis_compat.has_qgis4_enums() == (Qgis.QGIS_VERSION_INT >= 33600)


def test_qgis_takes_and_returns_the_resolved_values():
    number = QgsProcessingParameterNumber("N", "n", qgis_compat.ProcessingNumberParameterType.Double)
    assert number.dataType() == qgis_compat.ProcessingNumberParameterType.Double
    number.setFlags(number.flags() | qgis_compat.ProcessingParameterFlag.Advanced)
    assert number.flags() & qgis_compat.ProcessingParameterFlag.Advanced
    table = QgsVectorLayer("None?field=id:integer", "table", "memory")
    polygons = QgsVectorLayer("MultiPolygon?crs=EPSG:4326", "polygons", "memory")
    assert table.wkbType() == qgis_compat.WkbType.NoGeometry
    assert polygons.wkbType() == qgis_compat.WkbType.MultiPolygon
    assert polygons.geometryType() == qgis_compat.GeometryType.Polygon
