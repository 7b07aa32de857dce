"""Backbones: the (B,1,32,32) -> unit (B,128) contract, layer layout and parameter count, the
initialisation, the FRN / TLU formulas, and SOSNet32x32 against an independent build of the authors' net."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from descbench import nets
from descbench.errors import DescbenchError

L2NETS = (nets.L2NetBN, nets.L2NetFRN)
NETS = (*L2NETS, nets.SOSNet32x32)
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


@pytest.mark.parametrize("net", L2NETS, indirect=True, ids=lambda cls: cls.__name__)
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


@pytest.mark.parametrize("cls", L2NETS, ids=lambda cls: cls.__name__)
def test_backbones_match_official_models_on_seeded_weights(cls):
    train_value, eval_value = crosscheck_outputs(crosscheck_net(cls))
    expected_train, expected_eval = CROSS_CHECKED[cls.__name__]
    assert train_value == pytest.approx(expected_train, rel=1e-9)
    assert eval_value == pytest.approx(expected_eval, rel=1e-9)


# ---------------------------------------------------------------- SOSNet32x32 vs the authors' network
# yuruntian/SOSNet@7ae3730 codes/sosnet_model.py:8-57, rebuilt here layer by layer from plain torch.nn
# modules: Sequential index 0 InstanceNorm2d(1, affine=False, eps=1e-5); then per convolution
# Conv2d(bias=False), BatchNorm2d(affine=False, eps=1e-5), ReLU (indices 1-18); 19 Dropout; 20 the 8x8
# Conv2d(bias=False); 21 BatchNorm2d(128, affine=False, eps=1e-5); ``desc_norm`` a Sequential holding
# LocalResponseNorm(256, alpha=256, beta=0.5, k=0), applied to ``layers(x) + 1e-10``.
SOSNET_CONV_INDICES = (1, 4, 7, 10, 13, 16, 20)
SOSNET_BN_INDICES = (2, 5, 8, 11, 14, 17, 21)
SOSNET_KEYS = sorted(
    [f"layers.{i}.weight" for i in SOSNET_CONV_INDICES]
    + [f"layers.{i}.{buf}" for i in SOSNET_BN_INDICES
       for buf in ("running_mean", "running_var", "num_batches_tracked")])


class AuthorsSOSNet(nn.Module):
    """Independent reference of SOSNet32x32 in the authors' layer order and module names."""

    def __init__(self, drop_rate: float = 0.1) -> None:
        super().__init__()
        spec = [(1, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1)]
        modules: list[nn.Module] = [nn.InstanceNorm2d(1, eps=1e-5)]
        for c_in, c_out, stride in spec:
            modules.append(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False))
            modules.append(nn.BatchNorm2d(c_out, eps=1e-5, affine=False))
            modules.append(nn.ReLU())
        modules.append(nn.Dropout(drop_rate))
        modules.append(nn.Conv2d(128, 128, 8, bias=False))
        modules.append(nn.BatchNorm2d(128, eps=1e-5, affine=False))
        self.layers = nn.Sequential(*modules)
        self.desc_norm = nn.Sequential(nn.LocalResponseNorm(256, alpha=256.0, beta=0.5, k=0.0))

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        out = self.desc_norm(self.layers(patch) + 1e-10)
        return out.view(out.shape[0], -1)


def _authors_state(seed: int = 41) -> dict[str, torch.Tensor]:
    """A float64 state_dict with the authors' key names: seeded conv weights and BN running stats."""
    ref = AuthorsSOSNet().double()
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in ref.state_dict().items():
        if key.endswith(".weight"):
            fan_in = value[0].numel()
            value = torch.randn(value.shape, generator=gen, dtype=torch.float64) / math.sqrt(fan_in)
        elif key.endswith("running_mean"):
            value = 0.2 * torch.randn(value.shape, generator=gen, dtype=torch.float64)
        elif key.endswith("running_var"):
            value = 0.5 + torch.rand(value.shape, generator=gen, dtype=torch.float64)
        else:  # num_batches_tracked
            value = torch.tensor(7)
        state[key] = value
    return state


def l2_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def test_sosnet_state_dict_keys_and_parameter_count_match_the_authors():
    ours, ref = nets.SOSNet32x32(), AuthorsSOSNet()
    assert sorted(ref.state_dict()) == SOSNET_KEYS  # the indices above, read off the authors' source
    assert sorted(ours.state_dict()) == SOSNET_KEYS and len(SOSNET_KEYS) == 28
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters()) == 1_334_560
    assert sum(v.numel() for v in ours.state_dict().values()) == 1_335_719  # docs/plugins.md §4
    for key, value in ref.state_dict().items():
        assert ours.state_dict()[key].shape == value.shape, key
    # a state_dict with exactly the released key set loads strictly (and a foreign one does not)
    ours.load_state_dict(_authors_state(), strict=True)
    with pytest.raises(RuntimeError):
        ours.load_state_dict({**_authors_state(), "layers.0.running_mean": torch.zeros(1)}, strict=True)
    with pytest.raises(RuntimeError):
        nets.SOSNet32x32().load_state_dict(nets.L2NetBN().state_dict(), strict=True)


def test_sosnet_matches_the_authors_network_train_and_eval():
    state = _authors_state()
    ref = AuthorsSOSNet().double()
    ref.load_state_dict(state, strict=True)
    ours = nets.SOSNet32x32().double()
    ours.load_state_dict(state, strict=True)
    x = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(42), dtype=torch.float64)
    for train in (True, False, True, False):  # train steps move the running stats; both must agree
        ref.train(train)
        ours.train(train)
        with torch.random.fork_rng(devices=[]), torch.no_grad():  # the same dropout mask for both
            torch.manual_seed(43)
            expected = ref(x)
            torch.manual_seed(43)
            desc, raw = ours(x, return_raw=True)
        assert desc.shape == (8, 128) and desc.dtype == torch.float64
        assert float((desc - expected).abs().max()) <= 1e-12, train
        assert float((desc.norm(dim=1) - 1).abs().max()) <= 1e-12
        assert float((desc - l2_rows(raw + 1e-10)).abs().max()) <= 1e-12  # raw: the final BN output
    for key, value in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    ours.eval()
    with torch.no_grad():  # eval mode (as the released models are used): no batch dependence
        assert float((ours(x[:1]) - ours(x)[:1]).abs().max()) <= 1e-12


def test_sosnet_layout_and_pytorch_init():
    net = nets.SOSNet32x32(generator=torch.Generator().manual_seed(5))
    layers = list(net.layers)
    assert isinstance(layers[0], nn.InstanceNorm2d) and not layers[0].affine and layers[0].eps == 1e-5
    assert not layers[0].track_running_stats
    assert isinstance(layers[19], nn.Dropout) and layers[19].p == 0.1  # the released default
    assert [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)] == list(SOSNET_CONV_INDICES)
    assert [i for i, m in enumerate(layers) if isinstance(m, nn.BatchNorm2d)] == list(SOSNET_BN_INDICES)
    assert all(isinstance(layers[i + 2], nn.ReLU) for i in SOSNET_CONV_INDICES[:-1])
    bns = [layers[i] for i in SOSNET_BN_INDICES]
    assert all(not bn.affine and bn.eps == 1e-5 for bn in bns)
    convs = [layers[i] for i in SOSNET_CONV_INDICES]
    assert [c.stride[0] for c in convs] == [1, 1, 2, 1, 2, 1, 1] and all(c.bias is None for c in convs)
    (lrn,) = net.desc_norm
    assert isinstance(lrn, nn.LocalResponseNorm)
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (256, 256, 0.5, 0)
    for conv in convs:  # PyTorch's default: kaiming-uniform with a = sqrt(5), bound 1/sqrt(fan_in)
        w = conv.weight.detach()
        bound = 1.0 / math.sqrt(w[0].numel())
        assert float(w.abs().max()) <= bound and float(w.std()) > 0.4 * bound
    ortho = nets.SOSNet32x32(generator=torch.Generator().manual_seed(5), init="orthogonal")
    w = ortho.layers[20].weight.detach().flatten(1)
    assert torch.allclose(w @ w.T, 0.36 * torch.eye(128), atol=1e-5)
    with pytest.raises(DescbenchError):
        nets.SOSNet32x32(init="xavier")
    with pytest.raises(DescbenchError):
        net(torch.zeros(2, 1, 64, 64))


# ---------------------------------------------------------------------------------------------------
# Networks of released weights: each against an independent float64 build from plain torch.nn / torch
# operations written from the published descriptions (shared weights, eval mode).
# ---------------------------------------------------------------------------------------------------

def _fill(make, seed: int) -> nn.Module:
    """``make()`` built without initialisation (meta device), then float64 with every parameter and buffer
    seeded (BN variances positive)."""
    with torch.device("meta"):
        net = make()
    net = net.to_empty(device="cpu").double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(net.named_parameters()) + list(net.named_buffers()):
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen, dtype=torch.float64) + 0.5)
            else:
                fan_in = t[0].numel() if t.dim() > 1 else 1
                t.copy_(torch.randn(t.shape, generator=gen, dtype=torch.float64) / math.sqrt(fan_in))
    return net.eval()


def _x64(n: int = 5, seed: int = 9) -> torch.Tensor:
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _standardise(x: torch.Tensor, eps: float) -> torch.Tensor:
    flat = x.flatten(1)
    return (x - flat.mean(1).view(-1, 1, 1, 1)) / (flat.std(1).view(-1, 1, 1, 1) + eps)


def test_tfeat_is_tnet_and_not_unit_norm():
    import torch.nn.functional as F

    net = _fill(nets.TFeat, 1)
    sd = net.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "features.1.weight": (32, 1, 7, 7), "features.1.bias": (32,), "features.4.weight": (64, 32, 6, 6),
        "features.4.bias": (64,), "descr.0.weight": (128, 4096), "descr.0.bias": (128,)}
    assert sum(v.numel() for v in sd.values()) == 599_808
    x = _x64()
    ref = F.instance_norm(x, eps=1e-5)
    ref = torch.tanh(F.conv2d(ref, sd["features.1.weight"], sd["features.1.bias"]))
    ref = F.max_pool2d(ref, 2, 2)
    ref = torch.tanh(F.conv2d(ref, sd["features.4.weight"], sd["features.4.bias"]))
    ref = torch.tanh(F.linear(ref.flatten(1), sd["descr.0.weight"], sd["descr.0.bias"]))
    with torch.no_grad():
        out, raw = net(x, return_raw=True)
    assert float((out - ref).abs().max()) <= 1e-12
    assert torch.allclose(torch.tanh(raw), out)
    assert bool((out.norm(dim=1) > 1.5).all())  # tanh outputs, not L2-normalised
    with torch.no_grad():  # InstanceNorm first: the input range barely matters
        assert float((net(255 * x) - out).abs().max()) < 1e-3


def test_hardtfeat_standardises_and_normalises():
    import torch.nn.functional as F

    net = _fill(nets.HardTFeat, 2)
    sd = net.state_dict()
    assert sorted(sd) == sorted(["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
                                 "classifier.1.weight", "classifier.1.bias"])
    x = _x64()
    ref = _standardise(x, 1e-7)
    ref = F.max_pool2d(torch.tanh(F.conv2d(ref, sd["features.0.weight"], sd["features.0.bias"])), 2, 2)
    ref = torch.tanh(F.conv2d(ref, sd["features.3.weight"], sd["features.3.bias"]))
    ref = torch.tanh(F.conv2d(ref, sd["classifier.1.weight"], sd["classifier.1.bias"])).flatten(1)
    ref = ref / torch.sqrt((ref ** 2).sum(1, keepdim=True) + 1e-8)
    with torch.no_grad():
        assert float((net(x) - ref).abs().max()) <= 1e-12
        assert torch.allclose(net(255 * x), net(x), atol=1e-5)  # up to the std eps


def test_hardnet8_applies_the_pca_between_two_l2_normalisations():
    net = _fill(nets.HardNet8, 3)
    sd = net.state_dict()
    assert len(sd) == 34 and sum(v.numel() for v in sd.values()) == 9_037_992
    assert [i for i, m in enumerate(net.features) if isinstance(m, nn.Conv2d)] == [0, 3, 6, 9, 12, 15, 18, 22]
    assert [i for i, m in enumerate(net.features) if isinstance(m, nn.BatchNorm2d)] == [1, 4, 7, 10, 13, 16, 19, 23]
    assert sd["features.22.weight"].shape == (512, 256, 8, 8) and sd["mean"].shape == (512,)
    x = _x64()
    with torch.no_grad():
        feats = net.features(_standardise(x, 1e-7)).flatten(1)
        feats = feats / feats.norm(dim=1, keepdim=True)
        pca = (feats - sd["mean"]) @ sd["components"]
        ref = pca / pca.norm(dim=1, keepdim=True)
        out, raw = net(x, return_raw=True)
    assert out.shape == (5, 128) and raw.shape == (5, 512)
    assert float((out - ref).abs().max()) <= 1e-9 and float((raw - feats).abs().max()) <= 1e-9


def test_l2net_port_layout_and_lrn_with_k_half():
    net = _fill(nets.L2NetPort, 4)
    convs = [i for i, m in enumerate(net.features) if isinstance(m, nn.Conv2d)]
    bns = [m for m in net.features if isinstance(m, nn.BatchNorm2d)]
    assert convs == [0, 3, 6, 9, 12, 15, 18] and all(net.features[i].bias is not None for i in convs)
    assert len(bns) == 7 and all(bn.affine and bn.eps == 1e-10 for bn in bns)
    assert not any(isinstance(m, nn.Dropout) for m in net.modules())
    assert len(net.state_dict()) == 49
    x = _x64()
    with torch.no_grad():
        raw = net.features(_standardise(x, 1e-12)).flatten(1)
        ref = raw / torch.sqrt(0.5 + (raw ** 2).sum(1, keepdim=True))
        out = net(x)
    assert float((out - ref).abs().max()) <= 1e-12
    assert bool((out.norm(dim=1) < 1).all())


def test_cdf_l2net_float_and_binary():
    float_net = _fill(nets.CDFL2Net, 5)
    assert sorted(float_net.state_dict()) == sorted(_fill(nets.L2NetBN, 0).state_dict())
    assert float_net.features[-3].p == 0.1
    binary = _fill(lambda: nets.CDFL2Net(dim=256, binary=True), 5)
    assert binary.state_dict()["features.19.weight"].shape == (256, 128, 8, 8)
    x = _x64()
    with torch.no_grad():
        raw = binary.features(_standardise(x, 1e-7)).flatten(1)
        assert float((binary(x) - torch.tanh(raw)).abs().max()) <= 1e-12
        f_raw = float_net.features(_standardise(x, 1e-7)).flatten(1)
        assert torch.allclose(float_net(x), f_raw / f_raw.norm(dim=1, keepdim=True), atol=1e-9)


def test_input_transform_and_preprocessed_wrapper():
    pix = torch.arange(1024, dtype=torch.float32).view(32, 32)
    t = nets.InputTransform(scale=255.0, mean=pix)
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(t(x), 255 * x - pix)
    s = nets.InputTransform(mean=0.4437, std=0.2019)
    assert torch.allclose(s(x), (x - 0.4437) / 0.2019)
    with pytest.raises(DescbenchError):
        nets.InputTransform(mean=torch.zeros(16, 16))
    with pytest.raises(DescbenchError):
        nets.InputTransform(std=0.0)
    wrapped = nets.Preprocessed(nets.TFeat(generator=torch.Generator().manual_seed(0)), t).eval()
    assert wrapped.dim == 128 and set(dict(wrapped.named_buffers())) == {"transform.mean", "transform.std"}
    with torch.no_grad():
        assert torch.equal(wrapped(x), wrapped.net(t(x)))
    with pytest.raises(DescbenchError):
        wrapped(torch.zeros(1, 1, 64, 64))
