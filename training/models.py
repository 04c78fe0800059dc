"""The student: a stride-4 embedding CNN (exported), and the training-only heads (never exported).

Student layout (the same family as training/export_untrained.py, so the CNN runtime sees the same kind of
graph): two stride-2 3x3 conv stems (3 -> stem -> width), ``blocks`` residual blocks of two 3x3 convs at
stride 4 (optionally dilated), and a 1x1 head to ``embed_dim``. BatchNorm only (per-channel statistics
frozen at inference): nothing pools over the input, so an embedding depends only on its receptive field and
the network runs on any H, W that are multiples of 4.
"""

import torch
from torch import nn

STRIDE = 4
INPUT_SCALE = 1.0 / 255.0
INPUT_MEAN = [0.485, 0.456, 0.406]
INPUT_STD = [0.229, 0.224, 0.225]


def conv_bn(cin, cout, stride=1, dilation=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout))


class ResidualBlock(nn.Module):
    def __init__(self, width, dilation=1):
        super().__init__()
        self.first = conv_bn(width, width)
        self.second = conv_bn(width, width, dilation=dilation)

    def forward(self, x):
        return torch.relu(x + self.second(torch.relu(self.first(x))))


class Student(nn.Module):
    """[N, 3, H, W] normalised pixels (H, W multiples of 4) -> [N, embed_dim, H/4, W/4] embeddings."""

    def __init__(self, stem=32, width=64, blocks=3, embed_dim=24, dilation=1):
        super().__init__()
        self.config = dict(stem=stem, width=width, blocks=blocks, embed_dim=embed_dim, dilation=dilation)
        self.stem = nn.Sequential(conv_bn(3, stem, 2), nn.ReLU(), conv_bn(stem, width, 2), nn.ReLU())
        self.blocks = nn.Sequential(*[ResidualBlock(width, dilation if i % 2 else 1) for i in range(blocks)])
        self.head = nn.Conv2d(width, embed_dim, 1)

    def forward(self, rgb):
        return self.head(self.blocks(self.stem(rgb)))

    @property
    def features(self):
        return self.config["width"]


def normalise(rgb01):
    """Model input from pixels scaled to 0..1 (what the runtime does with input_scale/mean/std)."""
    mean = torch.tensor(INPUT_MEAN, dtype=rgb01.dtype, device=rgb01.device).view(1, 3, 1, 1)
    std = torch.tensor(INPUT_STD, dtype=rgb01.dtype, device=rgb01.device).view(1, 3, 1, 1)
    return (rgb01 - mean) / std


class Heads(nn.Module):
    """Training-only heads on the embeddings: descriptor regression, pseudo-label classifier, RGB decoder,
    teacher projection. None of them is exported."""

    def __init__(self, embed_dim, target_dim, pseudo_k, teacher_dim=0, classes=5):
        super().__init__()
        self.classes = nn.Conv2d(embed_dim, classes, 1)
        self.distill = nn.Conv2d(embed_dim, target_dim, 1)
        self.pseudo = nn.Conv2d(embed_dim, pseudo_k, 1)
        self.decoder = nn.Sequential(nn.Conv2d(embed_dim, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 3, 3, padding=1))
        self.teacher = nn.Conv2d(embed_dim, teacher_dim, 1) if teacher_dim else None


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


def conv_layers(model):
    """(kernel, stride, padding, dilation) of every convolution on the path from input to output, in order."""
    return [(m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0])
            for m in model.modules() if isinstance(m, nn.Conv2d)]


def receptive_reach(model, stride=STRIDE):
    """(reach, width): how far (px) beyond an output cell's own stride x stride pixels an input pixel can change
    its embedding (the halo tiled inference needs), and the receptive field's full width in px."""
    lo, hi = 0, 0
    for kernel, step, padding, dilation in reversed(conv_layers(model)):
        lo, hi = step * lo - padding, step * hi - padding + dilation * (kernel - 1)
    return max(-lo, hi - (stride - 1)), hi - lo + 1


def measured_reach(model, stride=STRIDE, size=192):
    """The reach measured by back-propagating from one output cell (extent of non-zero input gradient)."""
    was_training = model.training
    model = model.double().eval()
    rgb = torch.randn(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    out = model(rgb)
    cell = out.shape[-1] // 2
    out[0, :, cell, cell].sum().backward()
    touched = rgb.grad.abs().sum(dim=(0, 1)) > 0
    rows = torch.nonzero(touched.any(dim=1)).flatten()
    model.float().train(was_training)
    model.zero_grad(set_to_none=True)
    first, last = stride * cell, stride * cell + stride - 1
    return max(first - int(rows.min()), int(rows.max()) - last)


def flops_per_pixel(model):
    """Multiply-adds x 2 of every convolution per input pixel."""
    total, stride = 0.0, 1
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            stride *= module.stride[0]
            taps = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += 2.0 * taps * module.out_channels / stride**2
    return total
