"""Block descriptor values against hand-computed CIELAB and standard deviations."""

import numpy as np
import pytest

from map_segmenter.engine.segmentation.descriptors import block_descriptors, ring_sum, srgb_to_lab


def test_grey_is_neutral_lab_with_no_texture():
    grey = np.full((3, 8, 8), 128, np.uint8)
    features, valid = block_descriptors(grey, None, 4, context=0)
    # sRGB 128 -> linear ((128/255 + 0.055) / 1.055) ** 2.4 = 0.21586 -> L = 116 * cbrt(0.21586) - 16
    expected_l = 116 * np.cbrt(((128 / 255 + 0.055) / 1.055) ** 2.4) - 16
    assert valid.all() and features.shape == (2, 2, 6)
    assert features[..., 0] == pytest.approx(expected_l, abs=1e-3) and expected_l == pytest.approx(53.585, abs=1e-3)
    assert np.abs(features[..., 1:3]).max() < 1e-3 and (features[..., 3:] == 0).all()


def test_std_is_per_band_over_the_block_and_its_ring():
    values = np.zeros((3, 4, 8), np.uint8)
    values[0, :, :4] = np.array([[100, 200], [200, 100]]).repeat(2, 0).repeat(2, 1)  # block (0, 0): 100 / 200
    values[0, :, 4:] = 150  # block (0, 1): flat 150
    features, _ = block_descriptors(values, None, 4, context=0, texture_weight=1.0)
    assert features[0, 0, 3] == pytest.approx(50 * 100 / 255) and features[0, 1, 3] == 0
    assert (features[..., 4:] == 0).all()
    # with the ring both blocks see all 32 pixels: 8 of 100, 8 of 200, 16 of 150 -> std sqrt(1250)
    ringed, _ = block_descriptors(values, None, 4, context=1, texture_weight=1.0)
    assert ringed[0, 0, 3] == pytest.approx(np.sqrt(1250) * 100 / 255) == ringed[0, 1, 3]


def test_masked_pixels_do_not_count_and_empty_blocks_are_invalid():
    values = np.full((3, 4, 8), 200, np.uint8)
    values[:, :, :2] = 0
    valid = np.ones((4, 8), bool)
    valid[:, :2] = False
    valid[:, 4:] = False
    features, block_valid = block_descriptors(values, valid, 4, context=0)
    assert block_valid.tolist() == [[True, False]] and np.isnan(features[0, 1]).all()
    assert features[0, 0, 0] == pytest.approx(float(srgb_to_lab(np.full((3, 1), 200 / 255, np.float32))[0, 0]))
    assert (features[0, 0, 3:] == 0).all()


def test_ring_sum_is_exact_integer_box_sum():
    grid = np.arange(12, dtype=np.int64).reshape(3, 4)
    expected = np.array([[sum(grid[max(r - 1, 0): r + 2, max(c - 1, 0): c + 2].ravel()) for c in range(4)]
                         for r in range(3)])
    assert np.array_equal(ring_sum(grid, 1), expected)
