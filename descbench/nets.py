"""The three L2-Net backbones of the benchmark: BatchNorm (HardNet), FRN+TLU (HyNet, balanced) and
SOSNet's released network; and the networks of released weights that have no descbench backbone
(TFeat, HardTFeat, HardNet8, the PyTorch port of L2-Net, CDF's L2-Net; see the end of this module and
``descbench.weights``).

All follow the L2-Net topology (six 3x3 convolutions 32-32-64-64-128-128, strides 1-1-2-1-2-1, then
dropout and an 8x8 convolution to ``dim`` channels with a parameter-free BatchNorm) and share the
kornia-compatible contract: float input (B, 1, 32, 32) in [0, 1] -> L2-normalised (B, dim).
Layer choices follow DagnyT/hardnet (``HardNet``), yuruntian/HyNet (``HyNet``) and zonszer/Self-TNet
(``SDGMNet_128``, layer-for-layer HyNet's network) as summarised in docs/method.md §5.1 and §7.
``SOSNet32x32`` is the network of yuruntian/SOSNet ``codes/sosnet_model.py`` (InstanceNorm on the input,
BatchNorm with eps 1e-5, dropout 0.1, LocalResponseNorm as the L2 normalisation) with the same module
names, so a state_dict with the key set of the released ``sosnet_32x32_*.pth`` files (``layers.*``,
docs/plugins.md §4) loads with ``strict=True``.
Convolutions are initialised orthogonally (gain 0.6, biases 0.01) as HardNet's and Self-TNet's
``weights_init``; HyNet's and SOSNet's code have no ``weights_init`` and keep PyTorch's default
initialisation (``init="pytorch"``).
Cross-checked against those models (weights copied, float64, train and eval mode): see the regression
tests in tests/test_nets.py.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

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


def _conv_stack(convs: Sequence[tuple[int, int, int]], bias: bool, norm: Callable[[int], nn.Module],
                activation: Callable[[int], nn.Module]) -> list[nn.Module]:
    """3x3 convolutions (padding 1) from ``(c_in, c_out, stride)`` rows, each followed by its
    normalisation and activation, both built from the output channel count."""
    layers: list[nn.Module] = []
    for c_in, c_out, stride in convs:
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=bias),
                   norm(c_out), activation(c_out)]
    return layers


def _batchnorm(channels: int) -> nn.Module:
    """HardNet's normalisation: BatchNorm without affine parameters."""
    return nn.BatchNorm2d(channels, affine=False)


def _relu(channels: int) -> nn.Module:
    return nn.ReLU()


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
        layers = _conv_stack(L2NET_CONVS, bias=False, norm=_batchnorm, activation=_relu)
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
    """HyNet / balanced-method backbone: L2-Net with FRN+TLU (docs/method.md §5.1).

    The input itself passes FRN(1)+TLU(1) (no mean/std preprocessing); the six convolutions carry
    biases; the head is dropout, an 8x8 convolution without bias and BatchNorm2d(affine=False).
    ``init`` chooses the convolution initialisation (see ``_init_convs``): ``orthogonal`` as Self-TNet,
    ``pytorch`` as HyNet's code.
    """

    def __init__(self, dim: int = 128, dropout: float = 0.3, *,
                 generator: torch.Generator | None = None, init: str = "orthogonal") -> None:
        super().__init__()
        self.dim = dim
        layers = [FRN(1), TLU(1), *_conv_stack(L2NET_CONVS, bias=True, norm=FRN, activation=TLU)]
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
        layers = [nn.InstanceNorm2d(1, affine=False, eps=SOSNET_BN_EPS),
                  *_conv_stack(L2NET_CONVS, bias=False, activation=_relu,
                               norm=lambda c: nn.BatchNorm2d(c, affine=False, eps=SOSNET_BN_EPS))]
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


# ------------------------------------------------------------------------------------------------
# Networks of released weights. ``descbench.weights`` maps each release's state_dict onto one of these
# (or onto the backbones above) and wraps it in ``Preprocessed`` with the authors' input
# preprocessing; the module names follow the released key layouts, so most maps are the identity.
# ------------------------------------------------------------------------------------------------

def standardise_patches(x: Tensor, eps: float) -> Tensor:
    """Per-patch ``(x - mean) / (std + eps)`` over all pixels (unbiased std, statistics detached)."""
    flat = x.flatten(1)
    mean = flat.mean(dim=1).detach().view(-1, 1, 1, 1)
    std = flat.std(dim=1).detach().view(-1, 1, 1, 1) + eps
    return (x - mean) / std


def _l2(x: Tensor, eps: float) -> Tensor:
    """Rows of ``x`` divided by ``sqrt(sum(x^2) + eps)``."""
    return x / x.pow(2).sum(dim=1, keepdim=True).add(eps).sqrt()


def _init_pytorch_default(module: nn.Module, generator: torch.Generator | None) -> None:
    """PyTorch's default initialisation of every Conv2d and Linear, drawn from ``generator``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.weight[0].numel())
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)


class InputTransform(nn.Module):
    """The fixed input preprocessing of a released network, applied to the [0, 1] patches that
    descbench's extractor feeds: ``(x * scale - mean) / std``.

    ``scale`` 255 restores the 0-255 range an authors' extractor feeds; ``mean`` is a scalar (a
    dataset mean, e.g. Liberty's 0.4437) or a per-pixel ``(side, side)`` image (L2-Net's ``pixMean``).
    ``mean`` and ``std`` are buffers, so they travel with the network.
    """

    def __init__(self, scale: float = 1.0, mean: float | Tensor = 0.0, std: float = 1.0,
                 side: int = PATCH_SIZE) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32)
        if mean.dim() == 2:
            if tuple(mean.shape) != (side, side):
                raise DescbenchError(f"a per-pixel input mean must be {side}x{side}, got {tuple(mean.shape)}")
            mean = mean.view(1, 1, side, side)
        elif mean.dim() != 0:
            raise DescbenchError(f"an input mean must be a number or a {side}x{side} image, got shape "
                                 f"{tuple(mean.shape)}")
        std = float(std)
        if not std > 0:
            raise DescbenchError(f"an input std must be positive, got {std}")
        self.scale = float(scale)
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return (x * self.scale - self.mean) / self.std

    def extra_repr(self) -> str:
        mean = "per-pixel" if self.mean.dim() == 4 else f"{self.mean.item():.6g}"
        return f"scale={self.scale:g}, mean={mean}, std={self.std.item():.6g}"


class Preprocessed(nn.Module):
    """``net`` behind its ``InputTransform``: (B, 1, 32, 32) in [0, 1] -> (B, net.dim)."""

    def __init__(self, net: nn.Module, transform: InputTransform) -> None:
        super().__init__()
        self.transform = transform
        self.net = net
        self.dim = net.dim

    def forward(self, x: Tensor, return_raw: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        _check_input(x)
        return self.net(self.transform(x), return_raw=return_raw)


class TFeat(nn.Module):
    """TFeat's TNet (Balntas et al. BMVC 2016; vbalnt/tfeat ``tfeat_model.py``), the network of the
    released ``tfeat-*.params``, with its module names (``features.1``, ``features.4``, ``descr.0``).

    ``features``: InstanceNorm2d(1, affine=False, eps 1e-5) on the input, Conv2d(1, 32, 7) + Tanh,
    MaxPool2d(2, 2), Conv2d(32, 64, 6) + Tanh; ``descr``: Linear(64 * 8 * 8, 128) + Tanh.
    The output lies in (-1, 1) and is **not** L2-normalised (row norms around 8-10): TFeat is
    compared with the L2 distance of these raw vectors. Preprocessing of the authors' extractor
    (tfeat ``hpatches.py``, ``phototour.py``): cv2.resize to 32x32 (bilinear), 0-255 floats; the
    InstanceNorm makes the range irrelevant up to its eps. PyTorch's default initialisation.
    """

    def __init__(self, dim: int = 128, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.features = nn.Sequential(
            nn.InstanceNorm2d(1, affine=False),
            nn.Conv2d(1, 32, kernel_size=7),
            nn.Tanh(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(32, 64, kernel_size=6),
            nn.Tanh(),
        )
        self.descr = nn.Sequential(nn.Linear(64 * 8 * 8, dim), nn.Tanh())
        _init_pytorch_default(self, generator)

    def forward(self, x: Tensor, return_raw: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """(B, 1, 32, 32) -> (B, 128) in (-1, 1); ``raw`` is the linear layer's output before tanh."""
        _check_input(x)
        raw = self.descr[0](self.features(x).flatten(1))
        desc = self.descr[1](raw)
        return (desc, raw) if return_raw else desc


HARDTFEAT_L2_EPS = 1e-8  # ducha-aiki/affnet HardNet.py L2Norm


class HardTFeat(nn.Module):
    """HardTFeat (ducha-aiki/affnet ``HardNet.py`` ``HardTFeatNet``): TFeat's layers trained with the
    HardNet loss, the network of the released ``HardTFeat.pth`` with its module names.

    Per-patch standardisation (unbiased std + 1e-7, no InstanceNorm), ``features``: Conv2d(1, 32, 7)
    + Tanh, MaxPool2d(2, 2), Conv2d(32, 64, 6) + Tanh; ``classifier``: Dropout(0.1), Conv2d(64, 128, 8)
    + Tanh (a convolution, not a Linear); output L2-normalised (eps 1e-8 under the square root).
    The standardisation makes the input range irrelevant; descbench feeds cv2-resized [0, 1] patches.
    """

    def __init__(self, dim: int = 128, dropout: float = 0.1, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=7),
            nn.Tanh(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(32, 64, kernel_size=6),
            nn.Tanh(),
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Conv2d(64, dim, kernel_size=8), nn.Tanh())
        _init_pytorch_default(self, generator)

    def forward(self, x: Tensor, return_raw: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        _check_input(x)
        raw = self.classifier(self.features(standardise_patches(x, INPUT_STD_EPS))).flatten(1)
        desc = _l2(raw, HARDTFEAT_L2_EPS)
        return (desc, raw) if return_raw else desc


# (in, out, stride) of HardNet8's seven 3x3 convolutions: L2-Net's six plus 128 -> 256.
HARDNET8_CONVS = L2NET_CONVS + ((128, 256, 1),)


class HardNet8(nn.Module):
    """HardNet8 (Pultar 2020, "Improving the HardNet descriptor"; layout of kornia's ``HardNet8`` and
    of the released ``hardnet8v2.pt``).

    Per-patch standardisation (unbiased std + 1e-7), seven 3x3 convolutions without bias
    (32-32-64-64-128-128-256, strides 1-1-2-1-2-1-1) each with BatchNorm(affine=False) and ReLU at
    ``features.{0,3,...,18}``, dropout, an 8x8 convolution to ``features_dim`` = 512 channels and
    BatchNorm(512, affine=False) at ``features.22/23``. The 512-D output is L2-normalised, the
    released PCA is applied (``(f - mean) @ components`` with the buffers ``mean`` (512,) and
    ``components`` (512, 128)), and the result is L2-normalised again: 128-D unit descriptors.
    Before weights are loaded ``components`` is the projection on the first 128 coordinates.
    """

    def __init__(self, dim: int = 128, features_dim: int = 512, dropout: float = 0.3, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.features_dim = features_dim
        layers = _conv_stack(HARDNET8_CONVS, bias=False, norm=_batchnorm, activation=_relu)
        layers += [
            nn.Dropout(dropout),
            nn.Conv2d(HARDNET8_CONVS[-1][1], features_dim, kernel_size=8, bias=False),
            nn.BatchNorm2d(features_dim, affine=False),
        ]
        self.features = nn.Sequential(*layers)
        self.register_buffer("components", torch.eye(features_dim, dim))
        self.register_buffer("mean", torch.zeros(features_dim))
        _init_convs(self, generator)

    def forward(self, x: Tensor, return_raw: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """(B, 1, 32, 32) -> (B, 128) unit descriptors; ``raw`` is the unit 512-D pre-PCA feature."""
        _check_input(x)
        feat = l2_normalise(self.features(standardise_patches(x, INPUT_STD_EPS)).flatten(1))
        desc = l2_normalise((feat - self.mean) @ self.components)
        return (desc, feat) if return_raw else desc


L2NET_PORT_BN_EPS = 1e-10  # BatchNorm eps of the MatConvNet -> PyTorch port
L2NET_PORT_STD_EPS = 1e-12  # cal_L2Net_des.m: z ./ (std(z) + 1e-12)
L2NET_PORT_LRN_K = 0.5


class L2NetPort(nn.Module):
    """L2-Net (Tian et al. CVPR 2017) as ported from MatConvNet to PyTorch in
    vcg-uvic/image-matching-benchmark-baselines (``l2net_ported_weights_lib+.pth``), with its module
    names: every convolution has a bias, every BatchNorm is affine with eps 1e-10 (at
    ``features.{1,4,...,19}``; no dropout), the 8x8 convolution sits at ``features.18``.

    Input: the per-pixel ``pixMean`` of the released ``.mat`` is subtracted from the 0-255 patch first
    (``InputTransform``, done by ``descbench.weights``), then each patch is standardised (unbiased std +
    1e-12, as ``cal_L2Net_des.m``). Output: ``LocalResponseNorm(2 dim, alpha=2 dim, beta=0.5, k=0.5)``,
    i.e. ``x / sqrt(0.5 + |x|^2)``: almost, but not exactly, unit norm.
    """

    def __init__(self, dim: int = 128, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.dim = dim
        layers = _conv_stack(L2NET_CONVS, bias=True, activation=_relu,
                             norm=lambda c: nn.BatchNorm2d(c, affine=True, eps=L2NET_PORT_BN_EPS))
        layers += [
            nn.Conv2d(128, dim, kernel_size=8, bias=True),
            nn.BatchNorm2d(dim, affine=True, eps=L2NET_PORT_BN_EPS),
        ]
        self.features = nn.Sequential(*layers)
        self.desc_norm = nn.LocalResponseNorm(2 * dim, alpha=2 * dim, beta=0.5, k=L2NET_PORT_LRN_K)
        _init_convs(self, generator)

    def forward(self, x: Tensor, return_raw: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        _check_input(x)
        raw = self.features(standardise_patches(x, L2NET_PORT_STD_EPS))
        desc = self.desc_norm(raw).flatten(1)
        raw = raw.flatten(1)
        return (desc, raw) if return_raw else desc


class CDFL2Net(L2NetBN):
    """The L2-Net of CDF / dynamic soft margin (Zhang & Rusinkiewicz, ICCV 2019;
    lg-zhang/dynamic-soft-margin-pytorch ``modules/l2net.py``): ``L2NetBN``'s layers and key names
    with dropout 0.1; float models are 128-D and L2-normalised, binary models 256-D through tanh
    (binarise by sign). Its extractor (``common.get_basic_input_transform``) resizes with cv2
    (bilinear) to 32, maps to [0, 1] and normalises with the training set's mean/std from
    ``mean_std.pt`` (``InputTransform``, done by ``descbench.weights``) before the per-patch
    standardisation.
    """

    def __init__(self, dim: int = 128, binary: bool = False, dropout: float = 0.1, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(dim=dim, dropout=dropout, generator=generator)
        self.binary = binary

    def forward(self, x: Tensor, return_raw: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        _check_input(x)
        raw = self.features(self.standardise(x)).flatten(1)
        desc = torch.tanh(raw) if self.binary else l2_normalise(raw)
        return (desc, raw) if return_raw else desc
