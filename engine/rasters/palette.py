"""Colours for segment ids: a qualitative palette with many distinct colours, extended by hue rotation."""

import colorsys

# Kelly's colours of maximum contrast (minus white and black), then a few more distinct ones.
QUALITATIVE = [
    "#f3c300", "#875692", "#f38400", "#a1caf1", "#be0032", "#c2b280", "#848482", "#008856",
    "#e68fac", "#0067a5", "#f99379", "#604e97", "#f6a600", "#b3446c", "#dcd300", "#882d17",
    "#8db600", "#654522", "#e25822", "#2b3d26", "#1f77b4", "#17becf", "#bcbd22", "#9467bd",
]


def _hex_to_rgb(colour):
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def qualitative(count):
    """``count`` RGB tuples; the first 24 from the fixed palette, then golden-angle hues."""
    colours = [_hex_to_rgb(colour) for colour in QUALITATIVE[:count]]
    index = 0
    while len(colours) < count:
        hue = (index * 0.618033988749895) % 1.0
        value = 0.95 if index % 2 == 0 else 0.7
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, value)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
        index += 1
    return colours


# Anchors of viridis (perceptually uniform, colour-blind safe), interpolated linearly.
_VIRIDIS = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]


def ramp(count):
    """``count`` RGB tuples along a continuous ramp (viridis), dark to light like the segment ids."""
    anchors = len(_VIRIDIS) - 1
    colours = []
    for index in range(count):
        position = index / max(count - 1, 1) * anchors
        low = min(int(position), anchors - 1)
        t = position - low
        colours.append(tuple(round(a + (b - a) * t) for a, b in zip(_VIRIDIS[low], _VIRIDIS[low + 1])))
    return colours


def covering(segments, highest, colours, names):
    """(K, colours, names) of a legend that covers every id a label raster holds: when its ids go past the
    ``segments`` its metadata or settings name (up to ``highest``), the extra ids get colours of the qualitative
    palette and the names "Segment N", instead of being left out of the colour table, .qml and names."""
    if not highest or highest <= segments:
        return segments, colours, names
    extra = qualitative(highest)[segments:highest]
    colours = [tuple(colour) for colour in (colours or qualitative(segments))][:segments] + [tuple(c) for c in extra]
    names = list(names or [f"Segment {index}" for index in range(1, segments + 1)])[:segments]
    names += [f"Segment {index}" for index in range(segments + 1, highest + 1)]
    return highest, colours, names
