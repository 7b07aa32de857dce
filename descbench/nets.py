"""The three L2-Net backbones of the benchmark: BatchNorm (HardNet), FRN+TLU (HyNet, balanced) and
SOSNet's released network.

All follow the L2-Net topology (six 3x3 convolutions 32-32-64-64-128-128, strides 1-1-2-1-2-1, then
dropout and an 8x8 convolution to ``dim`` channels with a parameter-free BatchNorm) and share the
kornia-compatible contract: float input (B, 1, 32, 32) in [0, 1] -> L2-normalised (B, dim).
Layer choices follow DagnyT/hardnet (``HardNet``), yuruntian/HyNet (``HyNet``) and zonszer/Self-TNet
(``SDGMNet_128``, layer-for-layer HyNet's network) as summarised in shared/METHOD.md section 5.
``SOSNet32x32`` is the network of yuruntian/SOSNet ``codes/sosnet_model.py`` (InstanceNorm on the input,
BatchNorm with eps 1e-5, dropout 0.1, LocalResponseNorm as the L2 normalisation) with the same module
names, so a state_dict with the key set of the released ``sosnet_32x32_*.pth`` files (``layers.*``,
shared/PRETRAINED.md section 4) loads with ``strict=True``.
Convolutions are initialised orthogonally (gain 0.6, biases 0.01) as HardNet's and Self-TNet's
``weights_init``; HyNet's and SOSNet's code have no ``weights_init`` and keep PyTorch's default
initialisation (``init="pytorch"``).
Cross-checked against those models (weights copied, float64, train and eval mode): see the regression
tests in tests/test_nets.py.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from descbench.errors import DescbenchError

PATCH_SIZE = 32
L2_NORM_EPS = 1e-10  # added to the squared norm before the square root (HardNet's L2Norm, HyNet)
INPUT_STD_EPS = 1e-7  # added to the per-patch std (HardNet's input_norm)
INIT_GAIN = 0.6
INIT_BIAS = 0.01
INITS = ("orthogonal", "pytorch")

# (in channels, out channels, stride) of the six 3x3 convolutions of L2-Net.
L2NET_CONVS = ((1, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1))


def l2_normalise(x: Tensor) -> Tensor:
    """Rows of ``x`` scaled to unit L2 norm (the tiny epsilon keeps an all-zero row finite)."""
    return x / x.pow(2).sum(dim=1, keepdim=True).add(L2_NORM_EPS).sqrt()


def _check_input(x: Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) != (PATCH_SIZE, PATCH_SIZE):
        raise DescbenchError(
            f"L2-Net input must be a float tensor (B, 1, {PATCH_SIZE}, {PATCH_SIZE}), got shape "
            f"{tuple(x.shape)}; resize patches to {PATCH_SIZE}x{PATCH_SIZE} grey first"
        )


def _init_convs(module: nn.Module, generator: torch.Generator | None, init: str = "orthogonal") -> None:
    """Initialise every convolution from ``generator``.

    ``orthogonal``: weights orthogonal with gain 0.6, biases 0.01 (HardNet's and Self-TNet's
    ``weights_init``). ``pytorch``: PyTorch's default ``Conv2d`` initialisation (kaiming-uniform with
    a = sqrt(5), biases uniform in +-1/sqrt(fan_in)), which yuruntian/HyNet's model keeps.
    """
    if init not in INITS:
        raise DescbenchError(f"unknown network initialisation {init!r}; use one of {', '.join(INITS)}")
    for m in module.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if init == "orthogonal":
            nn.init.orthogonal_(m.weight, gain=INIT_GAIN, generator=generator)
            if m.bias is not None:
                nn.init.constant_(m.bias, INIT_BIAS)
        else:
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.weight[0].numel())
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)


class FRN(nn.Module):
    """Filter Response Normalisation (Singh & Krishnan 2020) without its TLU.

    ``y = gamma * x / sqrt(mean_HW(x^2) + eps) + beta`` per sample and channel: batch-independent, so
    train and eval mode agree and the input scale (0-1 or 0-255) does not matter.
    """

    def __init__(self, num_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, num_features, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        nu2 = x.pow(2).mean(dim=(2, 3), keepdim=True)
        return self.weight * (x * torch.rsqrt(nu2 + self.eps)) + self.bias

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, eps={self.eps}"


class TLU(nn.Module):
    """Thresholded Linear Unit ``max(x, tau)`` with a learned per-channel ``tau`` (init -1, as HyNet)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.tau = nn.Parameter(torch.full((1, num_features, 1, 1), -1.0))

    def forward(self, x: Tensor) -> Tensor:
        return torch.maximum(x, self.tau)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}"


def _head(dim: int, dropout: float) -> list[nn.Module]:
    """Dropout, 8x8 convolution to ``dim`` channels without bias, BatchNorm without affine params."""
    return [
        nn.Dropout(dropout),
        nn.Conv2d(128, dim, kernel_size=8, bias=False),
        nn.BatchNorm2d(dim, affine=False),
    ]


class L2NetBN(nn.Module):
    """HardNet backbone: L2-Net with BatchNorm (affine=False), ReLU, no conv biases.

    Each patch is standardised to zero mean and unit std inside ``forward`` (statistics detached, as in
    HardNet's ``input_norm``), so inputs in [0, 1] and [0, 255] give the same descriptor.
    """

    def __init__(self, dim: int = 128, dropout: float = 0.3, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.dim = dim
        layers: list[nn.Module] = []
        for c_in, c_out, stride in L2NET_CONVS:
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out, affine=False),
                nn.ReLU(),
            ]
        self.features = nn.Sequential(*layers, *_head(dim, dropout))
        _init_convs(self, generator)

    @staticmethod
    def standardise(x: Tensor) -> Tensor:
        """Per-patch ``(x - mean) / (std + 1e-7)`` with detached statistics (unbiased std, HardNet)."""
        flat = x.flatten(1)
        mean = flat.mean(dim=1).detach().view(-1, 1, 1, 1)
        std = flat.std(dim=1).detach().view(-1, 1, 1, 1) + INPUT_STD_EPS
        return (x - mean) / std

    def forward(self, x: Tensor, return_raw: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """(B, 1, 32, 32) -> (B, dim) unit descriptors; with ``return_raw`` also the pre-norm ones."""
        _check_input(x)
        raw = self.features(self.standardise(x)).flatten(1)
        desc = l2_normalise(raw)
        return (desc, raw) if return_raw else desc


class L2NetFRN(nn.Module):
    """HyNet / balanced-method backbone: L2-Net with FRN+TLU (METHOD.md section 5).

    The input itself passes FRN(1)+TLU(1) (no mean/std preprocessing); the six convolutions carry
    biases; the head is dropout, an 8x8 convolution without bias and BatchNorm2d(affine=False).
    ``init`` chooses the convolution initialisation (see ``_init_convs``): ``orthogonal`` as Self-TNet,
    ``pytorch`` as HyNet's code.
    """

    def __init__(self, dim: int = 128, dropout: float = 0.3, *,
                 generator: torch.Generator | None = None, init: str = "orthogonal") -> None:
        super().__init__()
        self.dim = dim
        layers: list[nn.Module] = [FRN(1), TLU(1)]
        for c_in, c_out, stride in L2NET_CONVS:
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=True),
                FRN(c_out),
                TLU(c_out),
            ]
        self.features = nn.Sequential(*layers, *_head(dim, dropout))
        _init_convs(self, generator, init)

    def forward(self, x: Tensor, return_raw: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """(B, 1, 32, 32) -> (B, dim) unit descriptors; with ``return_raw`` also the pre-norm ones.

        The raw (BatchNorm output, pre-normalisation) descriptors feed HyNet's norm regulariser.
        """
        _check_input(x)
        raw = self.features(x).flatten(1)
        desc = l2_normalise(raw)
        return (desc, raw) if return_raw else desc


SOSNET_BN_EPS = 1e-5  # eps of SOSNet's InstanceNorm and BatchNorms (eps_fea_norm)
SOSNET_DESC_EPS = 1e-10  # added to the descriptor before SOSNet's LocalResponseNorm (eps_l2_norm)


class SOSNet32x32(nn.Module):
    """SOSNet's released network (yuruntian/SOSNet ``codes/sosnet_model.py``, ``SOSNet32x32``).

    ``layers``: InstanceNorm2d(1) on the input (per-patch mean / biased std, eps 1e-5, so the input
    range does not matter up to eps), then the six L2-Net convolutions without bias, each followed by
    BatchNorm2d(affine=False, eps 1e-5) and ReLU, then dropout, the 8x8 convolution without bias and
    BatchNorm2d(dim, affine=False, eps 1e-5). Convolutions sit at ``layers.{1,4,7,10,13,16,20}`` and
    BatchNorms at ``layers.{2,5,8,11,14,17,21}``, the indices of the released state_dicts.
    ``desc_norm``: LocalResponseNorm(2 dim, alpha=2 dim, beta=0.5, k=0) of ``raw + 1e-10``, which
    spans every channel and so divides by the L2 norm. No parameters besides the convolution weights;
    ``init="pytorch"`` (default) keeps PyTorch's initialisation as the authors' code does.
    The released models are evaluated in eval mode (BatchNorm running statistics).
    """

    def __init__(self, dim: int = 128, dropout: float = 0.1, *,
                 generator: torch.Generator | None = None, init: str = "pytorch") -> None:
        super().__init__()
        self.dim = dim
        layers: list[nn.Module] = [nn.InstanceNorm2d(1, affine=False, eps=SOSNET_BN_EPS)]
        for c_in, c_out, stride in L2NET_CONVS:
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out, affine=False, eps=SOSNET_BN_EPS),
                nn.ReLU(),
            ]
        layers += [
            nn.Dropout(dropout),
            nn.Conv2d(128, dim, kernel_size=8, bias=False),
            nn.BatchNorm2d(dim, affine=False, eps=SOSNET_BN_EPS),
        ]
        self.layers = nn.Sequential(*layers)
        self.desc_norm = nn.Sequential(nn.LocalResponseNorm(2 * dim, alpha=2 * dim, beta=0.5, k=0))
        _init_convs(self, generator, init)

    def forward(self, x: Tensor, return_raw: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """(B, 1, 32, 32) -> (B, dim) unit descriptors; with ``return_raw`` also the pre-norm ones
        (the final BatchNorm's output)."""
        _check_input(x)
        raw = self.layers(x)
        desc = self.desc_norm(raw + SOSNET_DESC_EPS).flatten(1)
        raw = raw.flatten(1)
        return (desc, raw) if return_raw else desc
