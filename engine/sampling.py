"""A seeded sample of blocks spread evenly over the whole raster, independent of the window layout.

Every block gets a pseudo-random key from a hash of (seed, block index); the sample is the ``size``
blocks with the smallest keys. That is a uniform random sample over the raster, it is the same whatever
windows the raster is read in, and it needs memory for ``size`` vectors only.
"""

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def hash_keys(indices, seed):
    """splitmix64 of the block indices mixed with the seed: well-spread 64-bit keys."""
    with np.errstate(over="ignore"):
        z = indices.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _MASK64


class BlockSample:
    def __init__(self, size, seed):
        self.size = int(size)
        self.seed = int(seed)
        self.keys = np.empty(0, np.uint64)
        self.vectors = None

    def offer(self, indices, vectors):
        """Consider blocks with linear ``indices`` (n,) and descriptors ``vectors`` (n, C).

        The kept keys stay sorted: the newcomers are sorted and merged in (after equal keys already kept, as a
        stable sort of both would place them), so an offer costs a sort of the newcomers, not of the sample."""
        if len(indices) == 0:
            return
        keys = hash_keys(indices, self.seed)
        if self.vectors is None:
            self.vectors = np.empty((0, vectors.shape[1]), vectors.dtype)
        if len(self.keys) >= self.size:
            keep = keys < self.keys[-1]  # the largest kept key
            keys, vectors = keys[keep], vectors[keep]
        order = np.argsort(keys, kind="stable")
        keys, vectors = keys[order], vectors[order]
        at = np.searchsorted(self.keys, keys, side="right")
        self.keys = np.insert(self.keys, at, keys)[: self.size]
        self.vectors = np.insert(self.vectors, at, vectors, axis=0)[: self.size]

    def __len__(self):
        return len(self.keys)
