"""Per-patch training targets: SLIC superpixels and the engine's own colour + texture block descriptors."""

import numpy as np

from map_segmenter.engine.segmentation.descriptors import block_descriptors

STRIDE = 4
CONTEXTS = (1,)  # rings of neighbouring 4 px blocks: 0, 1, 3 = 4, 12, 28 px windows; 1 = segmenter:kmeans
# Raw targets are the engine's descriptors (CIELAB L, a, b and per-band std in L units) divided by one global
# scale, so their relative weights are those segmenter:kmeans clusters with. Measured on the held-out Dubai tiles
# (K-Means, K = 5): raw units 45.4 mIoU, per-channel standardised 40.6; contexts 0+1+3 45.3, 3 alone 43.1.
RAW_SCALE = 10.0
# Per-channel mean and std of [L, a, b, std_r, std_g, std_b] (texture weight 1.0) over the training imagery,
# measured once (training.datasets.targets.measure_stats); targets are standardised with them.
DESCRIPTOR_MEAN = np.array([47.0, 1.5, 3.5, 8.3, 8.3, 8.3], np.float32)
DESCRIPTOR_STD = np.array([28.0, 7.5, 11.0, 7.1, 7.1, 7.1], np.float32)


def slic_labels(pixels, cell=12, compactness=10.0):
    """SLIC superpixels (uint16 (h, w), ids from 0) of a uint8 (3, h, w) image, about ``cell`` px across."""
    from skimage.segmentation import slic

    h, w = pixels.shape[1:]
    count = max(2, int(round(h * w / float(cell * cell))))
    labels = slic(np.moveaxis(pixels, 0, -1), n_segments=count, compactness=compactness, start_label=0,
                  channel_axis=-1, enforce_connectivity=True)
    return labels.astype(np.uint16)


def descriptors(pixels, contexts=CONTEXTS, block=STRIDE):
    """Raw engine descriptors (6 per context, channels first) of a uint8 (3, h, w) patch on the stride grid."""
    planes = []
    for context in contexts:
        features, _ = block_descriptors(pixels, None, block, context=context, texture_weight=1.0)
        planes.append(np.moveaxis(features, -1, 0))
    return np.concatenate(planes).astype(np.float32)


def descriptor_targets(pixels, contexts=CONTEXTS, block=STRIDE, standardise=False):
    """Descriptors float32 (6 * len(contexts), h / block, w / block): engine units / RAW_SCALE, or standardised
    per channel with ``standardise``."""
    raw = descriptors(pixels, contexts, block)
    if not standardise:
        return raw / np.float32(RAW_SCALE)
    mean = np.tile(DESCRIPTOR_MEAN, len(contexts))[:, None, None]
    std = np.tile(DESCRIPTOR_STD, len(contexts))[:, None, None]
    return (raw - mean) / std


def measure_stats(source, count=64, size=256, seed=0):
    """Mean and std per channel of the context-1 descriptors over ``count`` windows of ``source``."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        pixels, _ = source.sample(rng, size)
        rows.append(descriptors(pixels, (1,)).reshape(6, -1).T)
    rows = np.concatenate(rows)
    return rows.mean(axis=0), rows.std(axis=0)
