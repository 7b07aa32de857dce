"""Backbones: the (B,1,32,32) -> unit (B,128) contract, layer layout and parameter count, the
initialisation, and the FRN / TLU formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from descbench import nets
from descbench.errors import DescbenchError

NETS = (nets.L2NetBN, nets.L2NetFRN)
CHANNELS = (1, 32, 32, 64, 64, 128, 128)  # input, then the six 3x3 convolutions


def _patches(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=NETS, ids=lambda cls: cls.__name__)
def net(request):
    """One seeded instance per backbone, shared by the read-only tests (construction is the slow part)."""
    return request.param(dropout=0.3, generator=torch.Generator().manual_seed(3))


def test_output_is_unit_128d_in_train_and_eval(net):
    net.train()
    x = _patches(4)
    out = net(x)
    assert out.shape == (4, 128) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.eval()
    with torch.no_grad():
        single = net(x[:1])
        desc, raw = net(x, return_raw=True)
    assert single.shape == (1, 128)
    assert torch.allclose(desc, raw / raw.norm(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(single[0], desc[0], atol=1e-5)  # eval mode: no batch dependence
    net.zero_grad()


def test_descriptor_ignores_input_scale(net):
    # [0,1] and [0,255] inputs give the same descriptor (per-patch standardisation / input FRN)
    net.eval()
    x = _patches(3, seed=2)
    with torch.no_grad():
        assert torch.allclose(net(x), net(255.0 * x), atol=1e-4)


def test_parameter_counts():
    convs = sum(9 * c_in * c_out for c_in, c_out in zip(CHANNELS[:-1], CHANNELS[1:])) + 64 * 128 * 128
    assert sum(p.numel() for p in nets.L2NetBN().parameters()) == convs  # no biases, BN affine=False
    conv_biases = sum(CHANNELS[1:])
    frn_tlu = 3 * sum(CHANNELS)  # FRN gamma + beta, TLU tau, per channel incl. the input FRN/TLU
    assert sum(p.numel() for p in nets.L2NetFRN().parameters()) == convs + conv_biases + frn_tlu
    assert convs == 1_334_560


def test_layout_and_initialisation(net):
    dropout, head, final_bn = list(net.features)[-3:]
    assert isinstance(dropout, nn.Dropout) and dropout.p == 0.3
    assert head.kernel_size == (8, 8) and head.bias is None
    assert isinstance(final_bn, nn.BatchNorm2d) and not final_bn.affine
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [1, 1, 2, 1, 2, 1, 1]
    for conv in convs:
        w = conv.weight.detach().flatten(1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        assert torch.allclose(gram, 0.36 * torch.eye(gram.shape[0]), atol=1e-5)  # orthogonal, gain 0.6
        if conv.bias is not None:
            assert bool((conv.bias == 0.01).all())
    if isinstance(net, nets.L2NetBN):
        assert all(c.bias is None for c in convs)
        assert all(not m.affine for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    else:
        assert all(c.bias is not None for c in convs[:-1])
        assert isinstance(net.features[0], nets.FRN) and isinstance(net.features[1], nets.TLU)


def test_same_seed_same_weights(net):
    cls = type(net)
    a = dict(net.named_parameters())  # parameters only: other tests ran the shared net in train mode
    b = dict(cls(generator=torch.Generator().manual_seed(3)).named_parameters())
    c = dict(cls(generator=torch.Generator().manual_seed(4)).named_parameters())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 64, 64), (1, 32, 32)])
def test_wrong_input_shape_is_an_error(shape):
    with pytest.raises(DescbenchError):
        nets.L2NetFRN()(torch.zeros(shape))


def test_frn_formula():
    frn = nets.FRN(2)
    with torch.no_grad():
        frn.weight.copy_(torch.tensor([2.0, -1.0]).view(1, 2, 1, 1))
        frn.bias.copy_(torch.tensor([0.5, 0.0]).view(1, 2, 1, 1))
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 2.0]]]])
    out = frn(x)
    nu2_a = (1 + 4 + 9 + 16) / 4  # mean of squares of channel 0
    nu2_b = 4 / 4
    for (r, c), v in {(0, 0): 1.0, (0, 1): 2.0, (1, 0): 3.0, (1, 1): 4.0}.items():
        assert out[0, 0, r, c].item() == pytest.approx(2.0 * v / math.sqrt(nu2_a + 1e-6) + 0.5, rel=1e-6)
    assert out[0, 1, 1, 1].item() == pytest.approx(-1.0 * 2.0 / math.sqrt(nu2_b + 1e-6), rel=1e-6)
    assert out[0, 1, 0, 0].item() == 0.0
    # fresh FRN: gamma 1, beta 0; per-sample, so a second sample does not change the first
    fresh = nets.FRN(2)
    both = fresh(torch.cat([x, 7 * torch.ones_like(x)]))
    assert torch.allclose(both[:1], fresh(x))


def test_tlu_formula():
    tlu = nets.TLU(2)
    assert bool((tlu.tau == -1).all())
    x = torch.tensor([[[[-3.0, 0.5]], [[-0.25, -1.5]]]])
    assert tlu(x).tolist() == [[[[-1.0, 0.5]], [[-0.25, -1.0]]]]
    with torch.no_grad():
        tlu.tau.copy_(torch.tensor([0.0, -0.5]).view(1, 2, 1, 1))
    assert tlu(x).tolist() == [[[[0.0, 0.5]], [[-0.25, -0.5]]]]


def test_bn_standardisation_matches_hardnet_input_norm():
    x = _patches(2, seed=9)
    flat = x.flatten(1)
    expected = (x - flat.mean(1).view(-1, 1, 1, 1)) / (flat.std(1).view(-1, 1, 1, 1) + 1e-7)
    assert torch.allclose(nets.L2NetBN.standardise(x), expected)
    assert nets.L2NetBN.standardise(x).flatten(1).std(1).sub(1).abs().max() < 1e-4


def test_pytorch_init_option():
    net = nets.L2NetFRN(generator=torch.Generator().manual_seed(5), init="pytorch")
    again = nets.L2NetFRN(generator=torch.Generator().manual_seed(5), init="pytorch")
    for conv, twin in zip(*([m for m in n.modules() if isinstance(m, nn.Conv2d)] for n in (net, again))):
        conv, twin = conv.requires_grad_(False), twin.requires_grad_(False)
        bound = 1.0 / math.sqrt(conv.weight[0].numel())  # kaiming-uniform(a=sqrt 5) = bias bound
        assert float(conv.weight.abs().max()) <= bound and float(conv.weight.std()) > 0.4 * bound
        assert torch.equal(conv.weight, twin.weight)
        if conv.bias is not None:
            assert float(conv.bias.abs().max()) <= bound and conv.bias.unique().numel() > 1
    with pytest.raises(DescbenchError):
        nets.L2NetFRN(init="xavier")


# ---------------------------------------------------------------- cross-checked regression values
# sum(descriptor * probe) of each backbone with every parameter drawn from seeded normals, on seeded
# patches, float64, dropout off: train mode (batch statistics), then eval mode (running statistics
# after that one train step). The official models given the same weights give the same values to
# rel < 1e-11 (checked outside the project): zonszer/Self-TNet@6a4e532 models.py SDGMNet_128 and
# yuruntian/HyNet@267aa6c model.py HyNet (for L2NetFRN), DagnyT/hardnet@35bc1d7 code/HardNet.py
# HardNet (for L2NetBN).
CROSS_CHECKED = {
    "L2NetFRN": (-2.2200330070501324, -1.0065002602982533),
    "L2NetBN": (-2.2546738830384023, -3.195696160836861),
}


def crosscheck_net(cls) -> nn.Module:
    """A float64 backbone whose parameters are all seeded normals (FRN gamma around 1, TLU tau around -1)."""
    net = cls(dropout=0.0).double()
    gen = torch.Generator().manual_seed(31)
    with torch.no_grad():
        for name, p in net.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if p.dim() == 4 and p.shape[0] > 1:  # convolution weights
                p.copy_(noise / math.sqrt(p[0].numel()))
            else:  # FRN gamma / beta, TLU tau, conv biases: their init values plus noise
                p.add_(0.3 * noise)
    return net


def crosscheck_outputs(net: nn.Module) -> tuple[float, float]:
    x = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(32), dtype=torch.float64)
    probe = torch.randn(6, 128, generator=torch.Generator().manual_seed(33), dtype=torch.float64)
    values = []
    for train in (True, False):
        net.train(train)
        with torch.no_grad():
            values.append(float((net(x) * probe).sum()))
    return values[0], values[1]


@pytest.mark.parametrize("cls", NETS, ids=lambda cls: cls.__name__)
def test_backbones_match_official_models_on_seeded_weights(cls):
    train_value, eval_value = crosscheck_outputs(crosscheck_net(cls))
    expected_train, expected_eval = CROSS_CHECKED[cls.__name__]
    assert train_value == pytest.approx(expected_train, rel=1e-9)
    assert eval_value == pytest.approx(expected_eval, rel=1e-9)
