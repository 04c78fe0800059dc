from map_segmenter.engine.rasters.windows import Window, plan_windows


def covers_exactly(windows, width, height):
    seen = [[0] * width for _ in range(height)]
    for window in windows:
        for y in range(window.yoff, window.yoff + window.height):
            for x in range(window.xoff, window.xoff + window.width):
                seen[y][x] += 1
    return all(count == 1 for row in seen for count in row)


def test_strips_cover_raster_once_and_align_to_step_and_input_rows():
    windows = plan_windows(103, 77, max_pixels=103 * 20, step=4, row_step=16)
    assert covers_exactly(windows, 103, 77)
    assert all(w.yoff % 16 == 0 and w.width == 103 for w in windows)
    assert [w.height for w in windows] == [16, 16, 16, 16, 13]


def test_tiles_when_a_strip_does_not_fit():
    windows = plan_windows(103, 77, max_pixels=26 * 26, step=8)
    assert covers_exactly(windows, 103, 77)
    assert all(w.xoff % 8 == 0 and w.yoff % 8 == 0 for w in windows)
    assert windows[0] == Window(0, 0, 24, 24)


def test_grown_window_is_clipped_to_raster():
    assert Window(0, 8, 16, 8).grown(4, 20, 14) == Window(0, 4, 20, 10)


def test_window_grid_arithmetic():
    from map_segmenter.engine.rasters.windows import cells

    assert [cells(size, 4) for size in (1, 4, 5, 8, 9)] == [1, 1, 2, 2, 3]
    window = Window(8, 4, 9, 5)
    assert window.on_grid(4) == Window(2, 1, 3, 2)
    assert Window.whole(10, 7).on_grid(4) == Window(0, 0, 3, 2)
    assert window.within(Window(4, 0, 20, 20)) == Window(4, 4, 9, 5)
    assert window.box == (8, 4, 9, 5) and Window.of((8, 4, 9, 5)) == window
    rows, columns = window.slices
    assert (rows, columns) == (slice(4, 9), slice(8, 17))
