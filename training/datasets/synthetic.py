"""A small synthetic source FOR TESTS ONLY: random Voronoi regions of flat colour and texture."""

import numpy as np


class SyntheticSource:
    def __init__(self, regions=6):
        self.regions = regions

    def sample(self, rng, size):
        """(uint8 (3, size, size), name): ``regions`` Voronoi cells, each a colour plus its own stripe texture."""
        seeds = rng.uniform(0, size, (self.regions, 2))
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        owner = np.argmin((yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2, 0)
        colours = rng.uniform(30, 225, (self.regions, 3))
        amplitude = rng.uniform(0, 25, self.regions)
        period = rng.uniform(3, 12, self.regions)
        texture = amplitude[owner] * np.sin(2 * np.pi * (xx + yy) / period[owner])
        image = colours[owner].transpose(2, 0, 1) + texture[None] + rng.normal(0, 3, (3, size, size))
        return np.clip(np.rint(image), 0, 255).astype(np.uint8), "synthetic"
