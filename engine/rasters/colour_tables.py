"""Colour tables of label rasters: the one writer (ids 1..K, 0 transparent) and the one reader."""

from osgeo import gdal


def colour_table(colours):
    """A GDAL colour table: 0 transparent (nodata), then ``colours`` for ids 1..K."""
    table = gdal.ColorTable()
    table.SetColorEntry(0, (0, 0, 0, 0))
    for index, colour in enumerate(colours, start=1):
        table.SetColorEntry(index, (*colour, 255))
    return table


def table_entries(table):
    """Every entry (RGBA) of a GDAL colour table; None for no table."""
    return None if table is None else [table.GetColorEntry(i) for i in range(table.GetCount())]


def table_colours(band, values):
    """The RGB colours the colour table of ``band`` gives the ids ``values`` (a count K: ids 1..K), or None when
    it has no table or the table does not reach every one of them."""
    values = range(1, values + 1) if isinstance(values, int) else list(values)
    table = band.GetRasterColorTable()
    if table is None or any(not 0 <= value < table.GetCount() for value in values):
        return None
    return [tuple(table.GetColorEntry(value)[:3]) for value in values]
