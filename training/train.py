"""Train the stride-4 student embedding network on real imagery (CPU-friendly, seeded, resumable).

    python -m training.train [--config FILE] [--steps N] [--seed N] [--out DIR] [--set section.key=value ...]

Each step draws one patch size, a batch of patches and two augmented views of each, and minimises a weighted
sum of terms, each divided by its running average for that patch size (see training/losses.py): descriptor
distillation and pseudo-labels from the engine's colour + texture descriptors, soft K-Means shaping, SLIC
boundary priors, edge-aware TV, two-view consistency (geometry undone) and reconstruction through a
training-only decoder; optionally a teacher. Writes OUT/config.json, OUT/log.jsonl (one JSON line per logged
step), OUT/tensorboard/ (when tensorboard is installed), OUT/checkpoint.pt (every --checkpoint-every steps and
at the end; a rerun with the same OUT resumes from it) and OUT/best.pt: the checkpoint with the best quick score
on labelled Dubai images of the tiles trained on (no label is used for training, so this is fair; the held-out
tiles are scored too, for information, and never used to choose).
Export with `python -m training.export --checkpoint OUT/best.pt`.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import losses
from .batches import fit_codebook, make_batch, make_source
from .config import build_config
from .datasets.rasters import heldout_pairs
from .models import Heads, Student, normalise, parameter_count


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML, JSON or Python (CONFIG / get_config()) file of overrides")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any config value, e.g. --set loss.tv=0.1 (repeatable; applied last)")
    flags = parser.add_argument_group("common overrides (each sets the config key in brackets)")
    flags.add_argument("--steps", type=int, help="optimizer steps [train.steps]")
    flags.add_argument("--seed", type=int, help="seed of data, augmentation and initialisation [train.seed]")
    flags.add_argument("--out", help="run folder: logs, checkpoints [train.out]")
    flags.add_argument("--lr", type=float, help="peak learning rate [train.lr]")
    flags.add_argument("--threads", type=int, help="torch CPU threads [train.threads]")
    flags.add_argument("--max-minutes", type=float,
                       help="stop with a checkpoint after this wall time [train.max_minutes]")
    flags.add_argument("--source", choices=["shards", "rasters", "synthetic"], help="patch source [data.source]")
    flags.add_argument("--shards", help="shard folder with index.jsonl [data.shards]")
    flags.add_argument("--batch-size", type=int, help="patches per step [data.batch_size]")
    flags.add_argument("--patch-sizes", help="comma-separated patch sizes, multiples of 4 [data.patch_sizes]")
    flags.add_argument("--width", type=int, help="student channels at stride 4 [model.width]")
    flags.add_argument("--blocks", type=int, help="student residual blocks [model.blocks]")
    flags.add_argument("--embed-dim", type=int, help="embedding channels [model.embed_dim]")
    flags.add_argument("--teacher", help="teacher network, e.g. efficientnet-lite0; '' = none [teacher.name]")
    flags.add_argument("--eval-every", type=int, help="quick held-out score every N steps; 0 = off [train.eval_every]")
    flags.add_argument("--no-resume", dest="resume", action="store_false", default=None,
                       help="start afresh even if OUT/checkpoint.pt exists [train.resume]")
    flags.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                       help="no progress bar [train.progress]")
    flags.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=None,
                       help="no TensorBoard events [train.tensorboard]")
    args = parser.parse_args(argv)
    mapping = {"train.steps": args.steps, "train.seed": args.seed, "train.out": args.out, "train.lr": args.lr,
               "train.threads": args.threads, "train.max_minutes": args.max_minutes, "data.source": args.source,
               "data.shards": args.shards, "data.batch_size": args.batch_size, "data.patch_sizes": args.patch_sizes,
               "model.width": args.width, "model.blocks": args.blocks, "model.embed_dim": args.embed_dim,
               "teacher.name": args.teacher, "train.eval_every": args.eval_every, "train.resume": args.resume,
               "train.progress": args.progress, "train.tensorboard": args.tensorboard}
    return build_config(args.config, mapping, args.set)


class ProgressBar:
    """A one-line text progress bar on stderr (no dependency)."""

    def __init__(self, total, start=0, enabled=True):
        self.total, self.start, self.enabled, self.began = total, start, enabled, time.time()

    def update(self, step, text=""):
        if not self.enabled:
            return
        done = (step - self.start) / max(self.total - self.start, 1)
        elapsed = time.time() - self.began
        eta = elapsed / done - elapsed if done > 0 else 0
        bar = "#" * int(30 * step / self.total)
        sys.stderr.write(f"\r[{bar:30s}] {step}/{self.total} {elapsed:5.0f}s eta {eta:5.0f}s {text}   ")
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n")


class Logger:
    """JSON lines always; TensorBoard when the package is installed (otherwise says so once)."""

    def __init__(self, out, tensorboard=True):
        self.json = open(Path(out) / "log.jsonl", "a")
        self.writer = None
        self.note = "tensorboard disabled (--no-tensorboard)"
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.note = "tensorboard is not installed (pip install tensorboard): logging JSON only"
            else:
                self.writer = SummaryWriter(str(Path(out) / "tensorboard"))
                self.note = f"tensorboard events in {Path(out) / 'tensorboard'}"

    def log(self, step, values):
        self.json.write(json.dumps(dict(step=step, **values)) + "\n")
        self.json.flush()
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, step)

    def close(self):
        self.json.close()
        if self.writer is not None:
            self.writer.close()


def learning_rate(config, step):
    train = config.train
    if step < train.warmup:
        return train.lr * (step + 1) / train.warmup
    progress = (step - train.warmup) / max(train.steps - train.warmup, 1)
    return train.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def config_changes(before, after, prefix=""):
    """'section.key: old -> new' for every setting that differs (train.resume and train.out excluded)."""
    changes = []
    for key in sorted(set(before) | set(after)):
        name = f"{prefix}{key}"
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += config_changes(old, new, name + ".")
        elif name not in ("train.resume", "train.out") and old != new:
            changes.append(f"{name}: {old} -> {new}")
    return changes


def build(config):
    model = Student(config.model.stem, config.model.width, config.model.blocks, config.model.embed_dim,
                    config.model.dilation)
    if config.loss.teacher and not config.teacher.name:
        raise SystemExit("loss.teacher > 0 needs a teacher: add --teacher efficientnet-lite0 (or set loss.teacher=0)")
    if config.loss.labels and config.data.source != "shards":
        raise SystemExit(f"loss.labels > 0 reads the Dubai masks through shards; data.source is "
                         f"{config.data.source!r}: use --source shards (or set loss.labels=0)")
    teacher = None
    if config.teacher.name:
        from .teacher import load_teacher

        teacher = load_teacher(config.teacher.name)  # raises TeacherMissingError: never a random stand-in
        if config.teacher.stride != teacher.stride:
            raise SystemExit(f"teacher.stride {config.teacher.stride}: {config.teacher.name} gives stride "
                             f"{teacher.stride} features only")
    target_dim = 6 * len(config.loss.distill_contexts)
    if not config.loss.distill_head and config.loss.distill and config.model.embed_dim < target_dim:
        raise SystemExit(f"model.embed_dim {config.model.embed_dim} < {target_dim} descriptor channels: raise it or "
                         f"set loss.distill_head=true")
    teacher_dim = teacher.channels if teacher is not None else 0
    heads = Heads(config.model.embed_dim, target_dim, config.loss.pseudo_k, teacher_dim)
    return model, heads, teacher


def compute_losses(config, model, heads, batch, normaliser, generator, teacher=None):
    """(total, {term: raw value}) for one batch; each weighted term is divided by its running average."""
    weights = config.loss
    n = batch.rgb[0].shape[0]
    rgb = torch.cat(batch.rgb)
    emb = model(normalise(rgb))
    views = emb.split(n)
    raw = {}
    if weights.distill:
        targets = torch.cat(batch.targets)
        predicted = heads.distill(emb) if weights.distill_head else emb[:, : targets.shape[1]]
        raw["distill"] = losses.descriptor_distillation(predicted, targets)
    if weights.pseudo and batch.pseudo[0] is not None:
        raw["pseudo"] = losses.pseudo_label(heads.pseudo(emb), torch.cat(batch.pseudo))
    if weights.labels and batch.classes[0] is not None:
        raw["labels"] = losses.class_labels(heads.classes(emb), torch.cat(batch.classes))
    if weights.cluster:
        raw["cluster"] = losses.soft_kmeans_shaping(emb, weights.cluster_k, weights.cluster_temperature,
                                                    weights.cluster_iters, generator)
    if weights.slic:
        raw["slic"] = losses.slic_boundary(emb, torch.cat(batch.slic), weights.slic_margin)
    if weights.tv:
        raw["tv"] = losses.edge_aware_tv(emb, rgb, weights.tv_sigma)
    if weights.consistency:
        raw["consistency"] = losses.consistency(views[0], views[1], batch.geometry[0], batch.geometry[1])
    if weights.recon:
        raw["recon"] = losses.reconstruction(heads.decoder(emb), rgb)
    if weights.teacher and teacher is not None:
        raw["teacher"] = losses.teacher_distillation(heads.teacher(emb), teacher(normalise(rgb)))
    total = sum(getattr(weights, name) * normaliser(name, batch.size, value) for name, value in raw.items())
    return total, raw


def save_checkpoint(path, state):
    tmp = Path(str(path) + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def train(config, log=print):
    """Run (or resume) training as configured; returns the run folder."""
    out = Path(config.train.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, config.train.threads))
    torch.manual_seed(config.train.seed)
    rng = np.random.default_rng(config.train.seed)
    generator = torch.Generator().manual_seed(config.train.seed)
    for size in config.data.patch_sizes:
        if size % 4:
            raise SystemExit(f"patch size {size} is not a multiple of the stride (4)")
    model, heads, teacher = build(config)
    optimiser = torch.optim.AdamW(list(model.parameters()) + list(heads.parameters()), lr=config.train.lr,
                                  weight_decay=config.train.weight_decay)
    normaliser = losses.RunningNormaliser(config.loss.ema_decay)
    source = make_source(config)
    step, elapsed, best = 0, 0.0, None
    checkpoint = out / "checkpoint.pt"
    if config.train.resume and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
        optimiser.load_state_dict(state["optimiser"])
        normaliser.load_state_dict(state["normaliser"])
        rng.bit_generator.state = state["numpy_rng"]
        generator.set_state(state["torch_generator"])
        torch.set_rng_state(state["torch_rng"])
        codebook, step, elapsed, best = state["codebook"], state["step"], state["elapsed"], state.get("best")
        log(f"resumed from {checkpoint} at step {step} ({elapsed / 60:.1f} min trained)")
        changed = config_changes(state.get("config") or {}, config.to_dict())
        if changed:
            log("warning: resuming with settings other than the checkpoint's (" + "; ".join(changed) + "): the "
                "run continues with the new ones (train.steps reshapes the learning-rate schedule from here)")
    else:
        codebook = fit_codebook(source, config.loss.pseudo_k, rng, config) if config.loss.pseudo else None
        (out / "log.jsonl").unlink(missing_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    logger = Logger(out, config.train.tensorboard)
    log(f"student: {parameter_count(model):,} parameters; data: {config.data.source}; {logger.note}")
    def spread(pairs, count):
        if not pairs or not count:
            return pairs
        return [pairs[i] for i in np.linspace(0, len(pairs) - 1, min(count, len(pairs))).astype(int)]

    select_pairs = spread(heldout_pairs(config.data.holdout, invert=True), config.train.eval_images)
    heldout = spread(heldout_pairs(config.data.holdout), config.train.heldout_images)

    def state(step):
        return dict(model=model.state_dict(), heads=heads.state_dict(), optimiser=optimiser.state_dict(),
                    normaliser=normaliser.state_dict(), numpy_rng=rng.bit_generator.state,
                    torch_generator=generator.get_state(), torch_rng=torch.get_rng_state(), codebook=codebook,
                    step=step, elapsed=elapsed, best=best, config=config.to_dict(), model_config=model.config)

    bar = ProgressBar(config.train.steps, step, config.train.progress)
    model.train()
    began = time.time() - elapsed
    while step < config.train.steps:
        size = int(rng.choice(config.data.patch_sizes))
        batch = make_batch(source, rng, size, config.data.batch_size, config, codebook)
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(config, step)
        total, raw = compute_losses(config, model, heads, batch, normaliser, generator, teacher)
        total_value = float(total.detach())
        if not math.isfinite(total_value):
            values = {k: float(v.detach()) for k, v in raw.items()}
            raise FloatingPointError(f"loss is {total_value} at step {step}: {values}")
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(heads.parameters()), 5.0)
        optimiser.step()
        step += 1
        elapsed = time.time() - began
        if step % config.train.log_every == 0 or step == config.train.steps:
            values = {"loss/total": total_value, "lr": optimiser.param_groups[0]["lr"], "patch": size,
                      "time_s": elapsed, **{f"loss/{k}": float(v.detach()) for k, v in raw.items()}}
            logger.log(step, values)
        bar.update(step, f"loss {total_value:.3f} @{size}px")
        out_of_time = config.train.max_minutes and elapsed > 60 * config.train.max_minutes
        if config.train.eval_every and select_pairs and (step % config.train.eval_every == 0 or out_of_time
                                                         or step == config.train.steps):
            miou, accuracy = quick_score(model, select_pairs)
            scores = {"select/miou": miou, "select/accuracy": accuracy}
            text = f"step {step}: quick mIoU {100 * miou:.1f} on {len(select_pairs)} trained-tile images"
            if heldout:
                scores["heldout/miou"], scores["heldout/accuracy"] = quick_score(model, heldout)
                text += f", {100 * scores['heldout/miou']:.1f} on {len(heldout)} held-out images"
            logger.log(step, scores)
            bar.close()
            log(text)
            if best is None or miou > best["miou"]:
                best = dict(step=step, miou=miou, accuracy=accuracy, heldout_miou=scores.get("heldout/miou"))
                save_checkpoint(out / "best.pt", state(step))
        if step % config.train.checkpoint_every == 0 or step == config.train.steps or out_of_time:
            save_checkpoint(checkpoint, state(step))
        if out_of_time:
            log(f"stopping at step {step}: {config.train.max_minutes} min wall-time budget reached")
            break
    bar.close()
    if not (out / "best.pt").exists():
        save_checkpoint(out / "best.pt", state(step))
    logger.close()
    log(f"done: step {step}, {elapsed / 60:.1f} min; best (chosen on trained-tile images): {best}")
    return out


def quick_score(model, pairs):
    from .quick_eval import score_pairs

    return score_pairs(model, pairs)


def main(argv=None):
    config = parse_args(argv)
    train(config)


if __name__ == "__main__":
    main()
