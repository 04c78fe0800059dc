"""A fast held-out score during training: torch embeddings of whole images, the engine's K-Means (K = 5) on
them, Hungarian mIoU with the evaluation package (map_segmenter.evaluation). Close to, but not
the same code path as, `python -m training.eval` (which runs the plugin's ONNX path); used to pick
checkpoints and watch training, not to report."""

import numpy as np
import torch
from PIL import Image

from map_segmenter.engine.segmentation import kmeans
from map_segmenter.evaluation.scoring import score_grid

from .models import normalise


@torch.no_grad()
def embed_image(model, pixels):
    """Embeddings (h/4, w/4, C) of a uint8 (3, H, W) image (reflect-padded to multiples of 4)."""
    h, w = pixels.shape[1:]
    ph, pw = -h % 4, -w % 4
    rgb = torch.from_numpy(pixels.astype(np.float32) / 255.0)[None]
    if ph or pw:
        rgb = torch.nn.functional.pad(rgb, (0, pw, 0, ph), mode="reflect")
    return model(normalise(rgb))[0].permute(1, 2, 0).numpy()


def segment(embeddings, k=5, seed=0, sample=20000):
    cells = embeddings.reshape(-1, embeddings.shape[-1])
    rng = np.random.default_rng(seed)
    centres = kmeans.fit(cells[rng.permutation(len(cells))[:sample]], k, seed=seed)
    return kmeans.assign(cells, centres).reshape(embeddings.shape[:2])


def score_pairs(model, pairs, k=5):
    """Mean (mIoU, accuracy) over (image, mask) pairs."""
    was_training = model.training
    model.eval()
    scores = []
    for image, mask in pairs:
        pixels = np.asarray(Image.open(image).convert("RGB")).transpose(2, 0, 1)
        scores.append(score_grid(segment(embed_image(model, pixels), k), mask, k))
    model.train(was_training)
    return tuple(float(v) for v in np.mean(scores, axis=0))
