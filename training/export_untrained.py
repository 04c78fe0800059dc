"""Export the UNTRAINED stride-4 student embedding network to ONNX (plumbing only: random weights).

    python -m training.export_untrained [--out tests/models] [--width 64] [--embed-dim 32] [--blocks 3]

Writes ``tests/models/<name>.onnx`` (a test model, not offered in MODEL) conforming to engine/backends/model_contract.py
and its model card ``<name>.md``.
The convolution weights are random (seeded); only the BatchNorm running statistics are calibrated, without
gradients, on patches of the bundled sample imagery so that activations are well scaled. The result lets the
whole CNN path (tiling, batching, execution providers, clustering) run end to end; its segments are those of
random texture filters, not of a trained model. The training issue replaces it with a trained network that
keeps the same architecture and contract.

Architecture: training/models.py's ``Student`` (the trained model's own class, without dilation): two stride-2
3x3 conv stems (3 -> stem -> width channels), ``blocks`` residual blocks of two 3x3 convs at stride 4, and a 1x1
head to ``embed_dim``. No normalisation that pools over space (GroupNorm, InstanceNorm): an embedding must depend
only on the pixels in its receptive field, or tiled inference could not equal untiled inference. BatchNorm is
folded into the convolutions at export.
"""

import argparse
import datetime
import hashlib
from pathlib import Path

import numpy as np
import torch
from osgeo import gdal
from torch import nn

from map_segmenter.engine.backends import model_contract

from . import ROOT
from .export import build_metadata, contract_rows, export_onnx
from .models import INPUT_MEAN, INPUT_STD, Student, parameter_count, receptive_reach

CALIBRATION_IMAGES = [
    ROOT / "data" / "kampala_oam" / "kampala_oam_z21_mosaic.tif",
    ROOT / "data" / "georef" / "swissimage_zurich_detectree_1091-322_00.tif",
    *sorted((ROOT / "data" / "dubai_hitl" / "images").glob("*.jpg"))[::6],
]


def calibration_patches(count=96, size=256, seed=0):
    """Random patches (float32, normalised as the runtime does) from the bundled sample imagery."""
    rng = np.random.default_rng(seed)
    patches = []
    for index in range(count):
        dataset = gdal.Open(str(CALIBRATION_IMAGES[index % len(CALIBRATION_IMAGES)]))
        x = int(rng.integers(0, dataset.RasterXSize - size + 1))
        y = int(rng.integers(0, dataset.RasterYSize - size + 1))
        pixels = dataset.ReadAsArray(x, y, size, size, band_list=[1, 2, 3]).astype(np.float32) / 255.0
        patches.append((pixels - np.array(INPUT_MEAN, np.float32)[:, None, None])
                       / np.array(INPUT_STD, np.float32)[:, None, None])
    return torch.from_numpy(np.stack(patches))


@torch.no_grad()
def calibrate_batchnorm(model, patches, batch=8):
    """Set BatchNorm running statistics to the exact averages over ``patches`` (no gradient, no training)."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    for start in range(0, len(patches), batch):
        model(patches[start : start + batch])
    model.eval()


def export(out_dir, name, stem, width, embed_dim, blocks, tile_size, seed):
    torch.manual_seed(seed)
    model = Student(stem=stem, width=width, blocks=blocks, embed_dim=embed_dim)
    calibrate_batchnorm(model, calibration_patches())
    training = {"status": "untrained", "data": "none: random weights (seed "
                f"{seed}); BatchNorm statistics calibrated on 96 patches of data/ imagery",
                "steps": 0, "date": datetime.date.today().isoformat(),
                "notes": "plumbing only; replace with a trained model"}
    description = (f"UNTRAINED stride-4 student ({stem}/{width} channels, {blocks} residual blocks, "
                   f"{embed_dim}-d embedding); random texture filters, not a segmentation model")
    metadata = build_metadata(model, name, training, tile_size, description, version="0.1.0-untrained")
    reach, rf_width = metadata["receptive_field"], receptive_reach(model)[1]
    flops, parameters = metadata["flops_per_pixel"], parameter_count(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.onnx"
    export_onnx(model, path, metadata, tile_size)
    verify(model, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    write_card(out_dir / f"{name}.md", name, metadata, parameters, rf_width, path.stat().st_size, digest)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {parameters} parameters, receptive field "
          f"{rf_width} px wide = reach {reach} px, {flops:.0f} FLOP/px, sha256 {digest[:12]})")
    return path


def verify(model, path):
    """ONNX Runtime output equals torch output within 1e-4 on an odd-sized, multiple-of-4 input."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rgb = torch.randn(2, 3, 100, 148)
    with torch.no_grad():
        expected = model(rgb).numpy()
    got = session.run([model_contract.OUTPUT_NAME], {model_contract.INPUT_NAME: rgb.numpy()})[0]
    error = float(np.abs(got - expected).max())
    if got.shape != expected.shape or error > 1e-4:
        raise SystemExit(f"export check failed: shapes {got.shape} / {expected.shape}, max error {error}")


def write_card(path, name, metadata, parameters, rf_width, size, digest):
    training = metadata["training"]
    rows = [
        *contract_rows(name, size, digest, "`python -m training.export_untrained`", metadata, parameters, rf_width),
        ("training", f"{training['status']}: {training['data']}; {training['steps']} steps; {training['date']}"),
        ("licence", metadata["licence"]),
    ]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    path.write_text(f"""# {name} — UNTRAINED (plumbing only)

**This model is not trained.** Its convolution weights are random (seeded). It exists so that
`segmenter:cnn` can be installed, tested and benchmarked end to end before the trained student exists.
Its segments follow random texture filters; do not use them for analysis. The trained default is
`student_s4_v1.onnx` (a smaller network with the same contract); this file stays for plumbing tests and as
the heavier architecture of the CNN benchmark.

| | |
|---|---|
{table}

Verified at export: ONNX Runtime output equals the torch output within 1e-4, and the receptive field
computed from the layers equals the one measured by back-propagation from an output cell.
The architecture has no normalisation that pools over space (GroupNorm, InstanceNorm) and BatchNorm is
folded into the convolutions: an embedding depends only on pixels within its receptive field, which is what
lets `segmenter:cnn` tile a raster without seams. A trained replacement must keep that property.
BatchNorm running statistics were set (no gradients, no labels) to their averages over 96 patches of
the project's sample imagery so that activations are well scaled; nothing else was fitted.
""")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "models")
    parser.add_argument("--name", default="student_s4_untrained")
    parser.add_argument("--stem", type=int, default=32)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--embed-dim", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    export(args.out, args.name, args.stem, args.width, args.embed_dim, args.blocks, args.tile_size, args.seed)


if __name__ == "__main__":
    main()
