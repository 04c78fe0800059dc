"""Export a pretrained network (timm, torchvision) with YOUR weights as an embedding model for segmenter:cnn.

    python -m training.export_backbone --model timm:resnet50 --weights rs_resnet50.pth --out resnet50_s16.onnx
        [--stride 16 | --layer layer3] [--pca 32 --pca-rasters a.tif b.tif] [--tile-size 512] [--name NAME]
    python -m training.export_backbone --model timm:vit_small_patch14_dinov2 --weights dinov2_vits14.pth \\
        --out dinov2_s.onnx [--layer blocks.11] [--tile-size 448] [--overlap 112]

--model: timm:NAME, torchvision:NAME or efficientnet-lite:efficientnet-lite0 (training/backbones.py). Nothing is
downloaded: the network is built with random weights and --weights (.pth, .pt or .safetensors; a training
checkpoint's 'state_dict'/'model'/'teacher' is unwrapped and a common key prefix such as 'module.' or
'backbone.' removed) is loaded into it. A tensor the exported layers need that is missing or has another shape
stops the export with the key names; keys only the unused head needs are reported. --random-weights exports the
untrained network instead (tests, benchmarks: the cost does not depend on the values); the card, the name and the
metadata then say so.

Writes MODEL.onnx (engine/backends/model_contract.py: input 'rgb', output 'embeddings', dynamic H and W) and MODEL.md,
the model card: source, weights file and sha256, layer, stride, receptive field, normalisation, keys report.
Checked at export: ONNX Runtime equals torch within 1e-4 (relative to the output's scale) on two input sizes,
and the plugin's contract check accepts the file.

Convolutional networks: the receptive field is computed from the ONNX graph (training/receptive_field.py) and,
where the input it needs is at most MEASURE_LIMIT px, checked against the one measured by back-propagation;
segmenter:cnn then tiles exactly. ViTs (global attention) have no finite receptive field: the model is marked
``global_context`` and segmenter:cnn blends overlapping tiles (--overlap px on each side; results then depend on
TILE_SIZE). Their positional embedding is interpolated to each tile's patch grid inside the graph.

--pca N --pca-rasters R...: a fixed PCA (mean and the N leading components of the embeddings of up to 64 patches
per raster) appended to the graph as a 1x1 convolution, so the model outputs N channels.
"""

import argparse
import datetime
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from map_segmenter.engine.backends import model_contract

from . import backbones
from .export import OPSET, export_onnx, parity
from .models import measured_reach
from .receptive_field import UnknownOperation, reach_from_graph

VERSION = "backbone-1"
MEASURE_LIMIT = 1024  # px: largest input the receptive field is measured on by back-propagation (float64)
INPUT_SCALE = 1.0 / 255.0
PCA_PATCHES = 64
PCA_CELLS = 200_000


class ExportError(SystemExit):
    pass


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_tile_size(stride, global_context):
    return stride * 32 if global_context else 512


def cnn_tile_size(receptive_field, stride):
    """Recommended tile of a CNN: at least 512 px and 6 halos, so the halos (run but not kept) cost at most
    (6 / 4)^2 = 2.25x the cores (ResNet-50 to layer3, halo 144 px: 896 px tiles, where 512 px ones ran 5.2x)."""
    halo = -(-receptive_field // stride) * stride
    return max(512, -(-6 * halo // 64) * 64)


def raster_patches(rasters, size, mean, std, count=PCA_PATCHES, seed=0):
    """Random ``size`` px patches of each raster's first three bands, normalised as the runtime does."""
    from osgeo import gdal

    rng = np.random.default_rng(seed)
    scale = np.float32(INPUT_SCALE) / np.array(std, np.float32)[:, None, None]
    offset = -np.array(mean, np.float32)[:, None, None] / np.array(std, np.float32)[:, None, None]
    for path in rasters:
        dataset = gdal.Open(str(path))
        if dataset is None:
            raise ExportError(f"--pca-rasters: GDAL cannot open {path}")
        bands = [1, 2, 3] if dataset.RasterCount >= 3 else [1, 1, 1]
        width, height = min(size, dataset.RasterXSize), min(size, dataset.RasterYSize)
        for _ in range(count):
            x = int(rng.integers(0, dataset.RasterXSize - width + 1))
            y = int(rng.integers(0, dataset.RasterYSize - height + 1))
            pixels = np.stack([dataset.GetRasterBand(b).ReadAsArray(x, y, width, height) for b in bands])
            yield torch.from_numpy(pixels.astype(np.float32) * scale + offset)


def fit_pca(features, rasters, components, stride, mean, std, seed=0):
    """(1x1 conv projecting onto the leading ``components`` principal axes, summary) fitted on the embeddings of
    patches of ``rasters``."""
    size = max(stride * 8, 256 // stride * stride)
    cells = []
    with torch.no_grad():
        for patch in raster_patches(rasters, size, mean, std, seed=seed):
            height, width = patch.shape[1] // stride * stride, patch.shape[2] // stride * stride
            if height < stride or width < stride:
                continue
            output = features(patch[None, :, :height, :width])[0]
            cells.append(output.flatten(1).T.double().numpy())
    if not cells:
        raise ExportError("--pca-rasters gave no patch of at least one stride")
    data = np.concatenate(cells)
    if len(data) > PCA_CELLS:
        data = data[np.random.default_rng(seed).choice(len(data), PCA_CELLS, replace=False)]
    if components > data.shape[1]:
        raise ExportError(f"--pca {components}: the layer has only {data.shape[1]} channels")
    centre = data.mean(axis=0)
    covariance = np.cov(data - centre, rowvar=False)
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1][:components]
    axes = vectors[:, order].T  # (components, C)
    axes *= np.where(axes[np.arange(components), np.abs(axes).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]  # fixed sign
    projection = nn.Conv2d(data.shape[1], components, 1)
    with torch.no_grad():
        projection.weight.copy_(torch.from_numpy(axes).float()[:, :, None, None])
        projection.bias.copy_(torch.from_numpy(-(axes @ centre)).float())
    explained = float(values[order].sum() / values.sum())
    return projection, dict(components=components, channels=int(data.shape[1]), cells=int(len(data)),
                            rasters=[Path(r).name for r in rasters], explained_variance=round(explained, 4))


def write_metadata(path, metadata):
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in model_contract.encode_metadata(metadata).items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "map_segmenter.training.export_backbone"
    onnx.save(proto, str(path))


def check_sizes(stride):
    """Two (N, H, W) parity inputs: multiples of the stride, not square, two batch sizes."""
    return ((1, stride * 7, stride * 10), (2, stride * 4, stride * 6))


def export(spec, out, weights=None, random_weights=False, layer=None, stride=None, pca=None, pca_rasters=(),
           tile_size=None, overlap=None, name=None, mean=None, std=None, seed=0, log=print):
    out = Path(out)
    if (weights is None) == (not random_weights):
        raise ExportError("give --weights FILE (your pretrained weights) or, for tests only, --random-weights")
    check_destinations(out, [weights, *pca_rasters])
    if pca and not pca_rasters:
        raise ExportError("--pca needs --pca-rasters (the rasters the PCA is fitted on)")
    name = name or out.stem
    torch.manual_seed(seed)
    try:
        network, (default_mean, default_std) = backbones.build(spec)
        if random_weights:
            backbones.randomise_norms(network, seed)
        features, layer_name, stride, channels, global_context = backbones.feature_network(network, layer, stride)
        used = backbones.used_keys(network, features, size=max(64, stride * 4))
        report = backbones.load_weights(network, weights, used) if weights else None
    except backbones.BackboneError as error:
        raise ExportError(f"export_backbone: {error}") from None
    mean, std = list(mean or default_mean), list(std or default_std)
    if report:
        log(f"weights {weights}: {report['loaded']} tensors loaded"
            + (f" (key prefix {report['prefix']!r} removed)" if report["prefix"] else "")
            + f"; all {report['used']} tensors of the exported layers present"
            + (f"; not in the file (unused by the export): {backbones._names(report['missing_unused'])}"
               if report["missing_unused"] else "")
            + (f"; in the file but not in the network (ignored): {backbones._names(report['unexpected'])}"
               if report["unexpected"] else "")
            + "".join(f"; {note}" for note in report["notes"]))
    parameters = sum(p.numel() for key, p in network.named_parameters() if key in used)
    model = features
    pca_summary = None
    if pca:
        projection, pca_summary = fit_pca(features, pca_rasters, pca, stride, mean, std, seed)
        model = nn.Sequential(features, projection).eval()
        channels = pca
        parameters += sum(p.numel() for p in projection.parameters())
        log(f"PCA: {pca} of {pca_summary['channels']} channels keep {pca_summary['explained_variance']:.1%} of the "
            f"variance of {pca_summary['cells']} cells of {len(pca_rasters)} rasters")
    given_tile_size = tile_size
    tile_size = tile_size or default_tile_size(stride, global_context)
    if tile_size % stride:
        raise ExportError(f"--tile-size {tile_size} is not a multiple of the stride {stride}")

    random_note = "RANDOM WEIGHTS: not a pretrained network (tests and benchmarks only)"
    weights_meta = ({"random": True, "note": random_note, "seed": seed} if random_weights else
                    {"random": False, "file": Path(weights).name, "sha256": sha256(weights),
                     "key_prefix_removed": report["prefix"], "tensors_loaded": report["loaded"],
                     "missing_unused": report["missing_unused"][:50], "unexpected": report["unexpected"][:50]})
    description = (f"{spec} up to {layer_name} (stride {stride}, {channels} channels"
                   + (f" after a PCA of {pca_summary['channels']}" if pca_summary else "") + ")")
    if random_weights:
        description = f"{random_note}. {description}"
    metadata = {
        "model_type": model_contract.MODEL_TYPE,
        "stride": stride,
        "embed_dim": channels,
        "receptive_field": 0,  # set below from the exported graph
        "input_scale": INPUT_SCALE,
        "input_mean": mean,
        "input_std": std,
        "tile_size": tile_size,
        "version": VERSION,
        "training": ({"status": "RANDOM WEIGHTS", "data": "none", "steps": 0, "notes": random_note}
                     if random_weights else
                     {"status": "pretrained", "data": f"the weights file {Path(weights).name} (see its source)",
                      "steps": 0, "notes": "weights as given; not trained by Map Segmenter"}),
        "name": name,
        "description": description,
        "licence": "that of the weights file (not checked)",
        "source": spec,
        "layer": layer_name,
        "weights": weights_meta,
        "global_context": global_context,
        "date": datetime.date.today().isoformat(),
    }
    if pca_summary:
        metadata["pca"] = pca_summary
    if isinstance(features, backbones.VitPatchGrid):
        grid = list(features.grid)
        metadata["positional_embedding"] = {
            "grid": grid, "trained_tile": [g * stride for g in grid],
            "note": "interpolated (bicubic) in the graph to each tile's patch grid"}
    path = export_onnx(model, out, metadata, tile_size)

    rf_note, rf_width = _receptive_field(path, model, stride, global_context, tile_size, overlap, metadata)
    if not given_tile_size and not metadata["global_context"]:
        metadata["tile_size"] = tile_size = cnn_tile_size(metadata["receptive_field"], stride)
    write_metadata(path, metadata)
    worst, scale = _parity(model, path, stride)
    if worst > 1e-4 * max(1.0, scale):
        raise ExportError(f"export check failed: ONNX Runtime differs from torch by {worst:.2e} (output scale "
                          f"{scale:.3g}; tolerance 1e-4 x max(1, scale))")
    from map_segmenter.engine.backends.onnx_runtime import clear_cache, load_model

    clear_cache()
    info = load_model(str(path), "cpu").info  # the plugin's own contract check
    digest = sha256(path)
    card = out.with_suffix(".md")
    write_card(card, name, metadata, parameters, rf_note, rf_width, path.stat().st_size, digest,
               worst, scale)
    log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {parameters:,} parameters, stride {stride}, "
        f"{channels} channels, {rf_note}; max |onnx - torch| {worst:.1e} at output scale {scale:.3g}; sha256 "
        f"{digest[:12]}) and {card.name}" + (f"; {random_note}" if random_weights else ""))
    return path, info


def _receptive_field(path, model, stride, global_context, tile_size, overlap, metadata):
    """Set metadata['receptive_field'] (and global_context); returns (card text, width px or None)."""
    try:
        found = reach_from_graph(path)
    except UnknownOperation:
        found = "unknown"
    if not global_context and found in (None, "unknown"):
        # operations the graph rule does not follow (a LayerNorm over channels behind transposes, as in ConvNeXt):
        # a finite reach measured by back-propagation, on an input large enough to see past it, is used instead
        for size in (256, 512, MEASURE_LIMIT):
            size = size // stride * stride
            measured = measured_reach(model, stride, size)
            if measured < size // 2 - 2 * stride:
                metadata["receptive_field"] = measured
                why = "no rule for some of its operations" if found == "unknown" else "it looks unbounded there"
                return (f"reach {measured} px, measured by back-propagation from a cell in the middle of a {size} px "
                        f"input (not computed from the graph: {why})"), 2 * measured + stride
        found = None  # the gradient reaches the whole input: global context
    if found is None or global_context:
        overlap = overlap if overlap is not None else tile_size // 4
        overlap = -(-overlap // stride) * stride
        if tile_size - 2 * overlap < overlap:
            raise ExportError(f"--overlap {overlap} px leaves a core smaller than the overlap in {tile_size} px "
                              f"tiles; choose --overlap <= {tile_size // 3 // stride * stride}")
        metadata["global_context"] = True
        metadata["receptive_field"] = overlap
        why = "global attention" if global_context else "global pooling, e.g. squeeze-and-excitation"
        return (f"unbounded ({why}): tiles of {tile_size} px overlap by {overlap} px on each side and their "
                f"embeddings are blended; results depend on TILE_SIZE"), None
    graph_stride, reach, width = found
    if graph_stride != stride:
        raise ExportError(f"the graph's stride {graph_stride} is not the layer's stride {stride}")
    size = -(-(2 * reach + 8 * stride) // 32) * 32
    if size <= MEASURE_LIMIT:
        measured = measured_reach(model, stride, size)
        if measured != reach:
            raise ExportError(f"receptive field: computed reach {reach} px but measured {measured} px")
        check = f"equal to the one measured by back-propagation on a {size} px input"
    else:
        check = f"not measured (it would need a {size} px float64 back-propagation)"
    metadata["receptive_field"] = reach
    return f"{width} px wide, reach {reach} px (from the ONNX graph; {check})", width


def _parity(model, path, stride):
    sizes = check_sizes(stride)
    worst = parity(model, path, sizes)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        scale = float(model(torch.randn(1, 3, sizes[0][1], sizes[0][2], generator=generator)).abs().max())
    return worst, scale


CARD_MARK = "Verified at export: ONNX Runtime equals torch"


def check_destinations(out, inputs):
    """Refuse, before any work, an ``out`` that is not a .onnx file, an ``out`` or card that is one of the
    ``inputs``, and a card path holding a file this command did not write (the user's own notes)."""
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"--out must name a .onnx file; got '{out}'")
    card = out.with_suffix(".md")
    sources = {Path(path).resolve() for path in inputs if path}
    for target in (out, card):
        if target.resolve() in sources:
            raise ExportError(f"'{target}' is one of the inputs (--weights or --pca-rasters): choose another --out")
    if card.exists() and CARD_MARK not in card.read_text(errors="replace"):
        raise ExportError(f"'{card}' exists and is not a model card written by export_backbone: move it or choose "
                          f"another --out (the card is written beside the model)")


def write_card(path, name, metadata, parameters, rf_note, rf_width, size, digest, worst, scale):
    weights = metadata["weights"]
    stride = metadata["stride"]
    rows = [
        ("file", f"`{name}.onnx` ({size / 1e6:.2f} MB, sha256 `{digest}`)"),
        ("made by", f"`python -m training.export_backbone` (torch {torch.__version__}, ONNX opset {OPSET}, "
                    f"{metadata['date']})"),
        ("source", f"`{metadata['source']}`"),
        ("weights", "**RANDOM (not pretrained)**" if weights["random"] else
         f"`{weights['file']}`, sha256 `{weights['sha256']}`; {weights['tensors_loaded']} tensors loaded"
         + (f" after removing the key prefix `{weights['key_prefix_removed']}`" if weights["key_prefix_removed"]
            else "")),
        ("layer", f"`{metadata['layer']}`"),
        ("parameters", f"{parameters:,}"),
        (f"input `{model_contract.INPUT_NAME}`", f"float32 [N, 3, H, W], H and W dynamic multiples of {stride}"),
        (f"output `{model_contract.OUTPUT_NAME}`", f"float32 [N, {metadata['embed_dim']}, H/{stride}, W/{stride}]"),
        ("input normalisation", f"pixels (0..255) x {metadata['input_scale']:.6g}, minus mean "
                                f"{[round(v, 4) for v in metadata['input_mean']]}, divided by std "
                                f"{[round(v, 4) for v in metadata['input_std']]} (by the runtime)"),
        ("receptive field", rf_note),
        ("tiling", "blended overlapping tiles (global context)" if metadata["global_context"] else
         f"exact: halo {metadata['receptive_field']} px"),
        ("recommended tile", f"{metadata['tile_size']} px"),
    ]
    if "positional_embedding" in metadata:
        grid = metadata["positional_embedding"]["grid"]
        rows.append(("positional embedding", f"{grid[0]} x {grid[1]} patches ({grid[0] * stride} px) as trained, "
                                             f"interpolated (bicubic) inside the graph to each tile's patch grid"))
    if "pca" in metadata:
        pca = metadata["pca"]
        rows.append(("PCA", f"{pca['components']} of {pca['channels']} channels ({pca['explained_variance']:.1%} of "
                            f"the variance) fitted on {pca['cells']} cells of {', '.join(pca['rasters'])}"))
    if not weights["random"]:
        if weights["missing_unused"]:
            rows.append(("not in the file", "unused by the export: " + ", ".join(weights["missing_unused"][:12])))
        if weights["unexpected"]:
            rows.append(("ignored from the file", ", ".join(weights["unexpected"][:12])))
    rows.append(("licence", metadata["licence"]))
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    warning = ("\n**RANDOM WEIGHTS.** This network was exported with `--random-weights`: its embeddings are those of "
               "an untrained network. It exists for tests and speed measurements; do not use it for analysis.\n"
               if weights["random"] else "")
    path.write_text(f"""# {name}{' — RANDOM WEIGHTS' if weights['random'] else ''}

{metadata['description']}.
{warning}
| | |
|---|---|
{table}

{CARD_MARK} within 1e-4 of the output's scale on inputs of two sizes (max
|difference| {worst:.1e}, output scale {scale:.3g}), and the plugin's contract check accepts the file.
Metadata (`metadata_props`, JSON): {json.dumps({k: metadata[k] for k in ('source', 'layer', 'global_context')})}.
""")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="timm:NAME, torchvision:NAME or efficientnet-lite:NAME")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--weights", type=Path, help="your weights file (.pth, .pt, .safetensors)")
    which.add_argument("--random-weights", action="store_true", help="untrained network (tests, benchmarks)")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write (the card beside it)")
    layer = parser.add_mutually_exclusive_group()
    layer.add_argument("--stride", type=int,
                       help="output stride of the feature layer (default 16; a ViT's is its patch size)")
    layer.add_argument("--layer", help="module name of the feature layer (e.g. layer3, blocks.11)")
    parser.add_argument("--pca", type=int, help="reduce the channels to N with a PCA fitted on --pca-rasters")
    parser.add_argument("--pca-rasters", nargs="+", type=Path, default=(), help="rasters to fit the PCA on")
    parser.add_argument("--tile-size", type=int,
                        help="recommended tile size in px (default: CNNs max(512, 6 halos); ViTs 32 patches)")
    parser.add_argument("--overlap", type=int, help="ViT: px each tile overlaps its neighbours (default tile/4)")
    parser.add_argument("--name", help="model name (default: the file name)")
    parser.add_argument("--mean", type=float, nargs=3, help="input mean (0..1 scale) if not the network's default")
    parser.add_argument("--std", type=float, nargs=3, help="input std (0..1 scale) if not the network's default")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-weights and the PCA sample")
    args = parser.parse_args(argv)
    export(args.model, args.out, args.weights, args.random_weights, args.layer, args.stride, args.pca,
           args.pca_rasters, args.tile_size, args.overlap, args.name, args.mean, args.std, args.seed)


if __name__ == "__main__":
    main()
