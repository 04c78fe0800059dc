"""Seeded augmentations. Geometry (flips, 90 degree rotations) is applied identically to the image, its SLIC
labels and its targets, and can be undone on the embeddings; photometric changes touch the image only."""

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Geometry:
    """Rotate by ``rot`` x 90 degrees (counter-clockwise, torch.rot90 on the last two axes), then flip
    left-right when ``flip``."""

    rot: int = 0
    flip: bool = False

    def apply(self, tensor):
        """The transformed tensor (..., H, W) (numpy arrays or torch tensors)."""
        if isinstance(tensor, np.ndarray):
            out = np.rot90(tensor, self.rot, axes=(-2, -1))
            return np.ascontiguousarray(out[..., ::-1] if self.flip else out)
        out = torch.rot90(tensor, self.rot, dims=(-2, -1))
        return torch.flip(out, dims=(-1,)) if self.flip else out

    def undo(self, tensor):
        """The inverse transform: ``undo(apply(t)) == t``."""
        if isinstance(tensor, np.ndarray):
            out = tensor[..., ::-1] if self.flip else tensor
            return np.ascontiguousarray(np.rot90(out, -self.rot, axes=(-2, -1)))
        out = torch.flip(tensor, dims=(-1,)) if self.flip else tensor
        return torch.rot90(out, -self.rot, dims=(-2, -1))


def random_geometry(rng, flips=True, rot90=True):
    return Geometry(int(rng.integers(4)) if rot90 else 0, bool(rng.integers(2)) if flips else False)


def photometric(rgb, rng, brightness=0.08, contrast=0.15, saturation=0.15, noise=0.01):
    """Random brightness, contrast, saturation and noise on float (3, H, W) values in 0..1 (numpy, seeded)."""
    out = rgb.astype(np.float32, copy=True)
    if saturation:
        grey = out.mean(axis=0, keepdims=True)
        out = grey + (out - grey) * np.float32(1 + rng.uniform(-saturation, saturation))
    if contrast:
        mean = out.mean()
        out = mean + (out - mean) * np.float32(1 + rng.uniform(-contrast, contrast))
    if brightness:
        out += np.float32(rng.uniform(-brightness, brightness))
    if noise:
        out += rng.normal(0, noise, out.shape).astype(np.float32)
    return np.clip(out, 0, 1)
