"""Released weights: every release's exact file format (written here from seeded networks), strict loads
through the key maps, round trips, refusals (tampered files, pickled objects, TorchScript), downloads
from a loopback server, ``descbench download weights --from-dir`` and the train/test overlap checks.
Nothing here touches the network: files are made by the tests and their digests computed here."""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from torch import nn

from descbench import cli, nets, weights
from descbench.data.download import ChecksumMismatchError, HttpOptions
from descbench.data.sources import Checksum, Mirror
from descbench.errors import DescbenchError
from descbench.weights import loading

FAST = HttpOptions(retries=1, backoff_s=0.01, timeout_s=10)
RELEASES = list(weights.RELEASES.values())
LEGACY = {"hardnet", "sosnet", "tfeat", "hardtfeat", "cdf", "cdf-binary"}  # saved before PyTorch 1.6


# ------------------------------------------------------------------------------------------ file makers

def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def randomised(release: weights.Release, seed: int = 0) -> nn.Module:
    """The release's core network with every parameter and buffer random (BN variances positive, FRN eps
    distinct), so a round trip that swapped or dropped anything shows."""
    net = loading.empty_core(release)  # uninitialised: every tensor is set below
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(net.named_parameters()) + list(net.named_buffers()):
            if not tensor.is_floating_point():
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    for i, module in enumerate(m for m in net.modules() if isinstance(m, nets.FRN)):
        module.eps = 1e-6 * (i + 1)
    return net.eval()


def _save(obj, legacy: bool) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def release_files(release: weights.Release, net: nn.Module, *, num_batches_tracked: bool = True,
                  mean_std: tuple[float, float] = (0.4437, 0.2019), pix_mean: np.ndarray | None = None,
                  extra: dict | None = None, legacy: bool | None = None) -> dict[str, bytes]:
    """filename -> bytes of the release's files in its exact published format (legacy serialisation for
    files saved before PyTorch 1.6, unless ``legacy`` says otherwise)."""
    sd = weights.to_release_layout(release, net, num_batches_tracked=num_batches_tracked)
    family = release.family
    legacy = family in LEGACY if legacy is None else legacy
    if family in ("hardnet",):
        obj = {"epoch": 10, "state_dict": sd}
    elif family == "hardtfeat":
        sd = dict(sd)
        sd.update({"SIFT.gx.0.weight": torch.randn(1, 1, 1, 3), "SIFT.gy.0.weight": torch.randn(1, 1, 3, 1),
                   "SIFT.pk.0.weight": torch.randn(1, 1, 11, 11)})
        obj = {"epoch": 2, "state_dict": sd}
    elif family == "tfeat":
        obj = OrderedDict(sd)
    elif family == "sdgmnet":
        first = next(iter(sd.values()))
        obj = {"epoch": 199, "model_state_dict": sd, "FPR": 0.00612,
               "opt": {"state": {0: {"exp_avg": torch.zeros_like(first), "step": torch.tensor(5.0)}},
                       "param_groups": [{"lr": 0.01, "betas": (0.9, 0.999), "params": [0]}]}}
    elif family == "self-tnet":
        obj = {"model_arch": "TeacherNet", "S_model_arch": "SDGMNet128", "T_model_arch": "SDGMNet128",
               "S_state_dict": sd, "T_state_dict": {k: v.clone() for k, v in sd.items()}, "epoch": 9}
    else:
        obj = sd
    if extra:
        obj = dict(obj, **extra)
    files = {release.file("weights").filename: _save(obj, legacy)}
    if family in ("cdf", "cdf-binary"):
        files[release.file("mean_std").filename] = _save({"mean": mean_std[0], "std": mean_std[1]}, True)
    if family == "l2net-port":
        pix = pix_mean if pix_mean is not None else np.random.default_rng(1).uniform(90, 140, (32, 32))
        buffer = io.BytesIO()
        scipy.io.savemat(buffer, {"pixMean": pix, "pixMeanCen": pix[::-1].copy(),
                                  "net": {"layers": np.zeros((1, 3))}})
        files[release.file("pixmean").filename] = buffer.getvalue()
    return files


def pinned(release: weights.Release, files: dict[str, bytes], url=None) -> weights.Release:
    """``release`` pinned to the test-made bytes (git blob ids computed here), its mirrors replaced."""
    def mirrors(f):
        blob = Checksum("git-blob", git_blob(files[f.filename]), "test")
        return tuple(Mirror(u, blob, f.filename) for u in (url(f) if url else ()))
    return release.with_mirrors(mirrors, lambda f: (Checksum("git-blob", git_blob(files[f.filename]), "test"),))


def write(folder: Path, files: dict[str, bytes]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


def roles(release: weights.Release, paths: dict[str, Path]) -> dict[str, Path]:
    return {f.role: paths[f.filename] for f in release.files}


def patches(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------- every release

@pytest.mark.parametrize("release", RELEASES, ids=lambda r: r.name)
def test_every_release_loads_strictly_and_round_trips(release, tmp_path):
    net = randomised(release)
    files = release_files(release, net)
    paths = write(tmp_path, files)
    loaded = weights.build_from_files(release, roles(release, paths))
    core = loaded.network.net
    # descbench state_dict -> release layout -> descbench: every tensor and every FRN eps back
    want, got = net.state_dict(), core.state_dict()
    assert set(want) == set(got)
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert [m.eps for m in net.modules() if isinstance(m, nets.FRN)] == \
           pytest.approx([m.eps for m in core.modules() if isinstance(m, nets.FRN)])
    # ... and back to the release layout, key for key
    again = weights.to_release_layout(release, core)
    assert set(again) == set(weights.to_release_layout(release, net))
    # output: shape and norm
    x = patches()
    with torch.no_grad():
        out = loaded.network(x)
    assert out.shape == (6, release.dim) and torch.isfinite(out).all()
    norms = out.norm(dim=1)
    if release.unit_norm:
        assert torch.allclose(norms, torch.ones(6), atol=1e-5)
    elif release.family == "l2net-port":
        assert bool((norms < 1).all()) and bool((norms > 0).all())
    else:  # tanh outputs (TFeat, CDF binary): in [-1, 1], far from unit norm
        assert bool((out.abs() <= 1).all()) and bool((norms > 1.5).all())
    assert not loaded.network.training


def test_catalogue_layouts_match_the_published_key_counts():
    def count(name):
        release = weights.get(name)
        sd = weights.to_release_layout(release, loading.empty_core(release))
        return len(sd), sum(v.numel() for v in sd.values()), sd

    assert count("hardnet-plus@liberty")[:2] == (28, 1_335_719)
    assert count("sosnet@liberty")[:2] == (28, 1_335_719)
    n, values, hynet = count("hynet@liberty")
    assert (n, values) == (44, 1_336_619)
    assert hynet["layer7.1.weight"].shape == (128, 128, 8, 8) and hynet["layer1.0.eps"].shape == (1,)
    assert "layer1.2.bias" in hynet and "layer6.0.weight" in hynet and "layer7.2.running_var" in hynet
    assert count("hardnet8v2")[:2] == (34, 9_037_992)
    _, _, hardnet8 = count("hardnet8v2")
    assert hardnet8["features.22.weight"].shape == (512, 256, 8, 8) and hardnet8["components"].shape == (512, 128)
    _, _, tfeat = count("tfeat@liberty")
    assert {k: tuple(v.shape) for k, v in tfeat.items()} == {
        "features.1.weight": (32, 1, 7, 7), "features.1.bias": (32,), "features.4.weight": (64, 32, 6, 6),
        "features.4.bias": (64,), "descr.0.weight": (128, 4096), "descr.0.bias": (128,)}
    n, _, sdgm = count("sdgmnet@liberty")
    assert n == 88 and sdgm["features.0.2.weight"] is sdgm["layer1.2.weight"]  # one tensor, stored twice
    _, _, binary = count("cdf-binary@liberty")
    assert binary["features.19.weight"].shape == (256, 128, 8, 8)
    assert count("l2net-plus@liberty")[0] == 49


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_hardnet_file_without_num_batches_tracked_equals_l2netbn(legacy, tmp_path):
    release = weights.get("hardnet-plus@liberty")
    net = randomised(release, seed=3)
    sd = weights.to_release_layout(release, net, num_batches_tracked=False)
    assert not any(k.endswith("num_batches_tracked") for k in sd)
    path = tmp_path / "checkpoint_liberty_with_aug.pth"
    path.write_bytes(_save({"epoch": 10, "state_dict": sd}, legacy))
    loaded = weights.build_from_files(release, {"weights": path})
    assert any("num_batches_tracked" in note for note in loaded.notes)
    assert loaded.info["epoch"] == 10 and loaded.info["container"] == "state_dict"
    # the same weights loaded directly into descbench's L2NetBN give the same descriptors
    plain = loading.empty_core(release)
    assert type(plain) is nets.L2NetBN
    plain.load_state_dict(net.state_dict())
    plain.eval()
    x = patches(8, seed=5)
    with torch.no_grad():
        assert torch.allclose(loaded.network(x), plain(x), atol=1e-5)
        # and equal the authors' pipeline: (x - 0.4437) / 0.2020, per-patch standardisation, net, L2
        authors = plain((x - loading.HARDNET_MEAN) / loading.HARDNET_STD)
    assert torch.allclose(loaded.network(x), authors, atol=1e-6)


def test_bare_state_dict_where_a_checkpoint_was_expected_is_accepted(tmp_path):
    release = weights.get("hardnet@liberty")
    net = randomised(release)
    path = tmp_path / "checkpoint_liberty_no_aug.pth"
    path.write_bytes(_save({"module." + k: v for k, v in net.state_dict().items()}, False))
    loaded = weights.build_from_files(release, {"weights": path})
    assert loaded.info["stripped_prefix"] == "module."
    assert torch.equal(loaded.network.net.features[0].weight, net.features[0].weight)


def test_hynet_preprocessing_scales_to_0_255_and_matches_l2netfrn(tmp_path):
    release = weights.get("hynet@liberty")
    net = randomised(release, seed=2)
    paths = write(tmp_path, release_files(release, net))
    loaded = weights.build_from_files(release, roles(release, paths))
    x = patches(4)
    with torch.no_grad():
        assert torch.allclose(loaded.network(x), net(255.0 * x), atol=1e-6)


def test_cdf_and_l2net_read_their_auxiliary_files(tmp_path):
    cdf = weights.get("cdf@notredame")
    net = randomised(cdf)
    paths = write(tmp_path / "cdf", release_files(cdf, net, mean_std=(0.4854, 0.1864)))
    loaded = weights.build_from_files(cdf, roles(cdf, paths))
    assert loaded.network.transform.mean.item() == pytest.approx(0.4854)
    assert loaded.network.transform.std.item() == pytest.approx(0.1864)
    port = weights.get("l2net-plus@liberty")
    pix = np.arange(1024, dtype=np.float64).reshape(32, 32) / 8.0
    net = randomised(port)
    paths = write(tmp_path / "l2net", release_files(port, net, pix_mean=pix))
    loaded = weights.build_from_files(port, roles(port, paths))
    assert torch.allclose(loaded.network.transform.mean[0, 0], torch.from_numpy(pix).float())
    x = patches(3)
    with torch.no_grad():
        assert torch.allclose(loaded.network(x), net(255.0 * x - torch.from_numpy(pix).float()), atol=1e-5)
    bad = tmp_path / "bad.mat"
    scipy.io.savemat(bad, {"pixMean": np.zeros((16, 16))})
    with pytest.raises(DescbenchError, match="32x32"):
        weights.read_pix_mean(bad)
    bad_ms = tmp_path / "mean_std.pt"
    bad_ms.write_bytes(_save({"mean": 0.4}, True))
    with pytest.raises(DescbenchError, match="mean_std"):
        weights.read_mean_std(bad_ms)


# ------------------------------------------------------------------------------------------- refusals

def _plant(path: str) -> None:
    Path(path).touch()


class PlantsAMarker:
    """Unpickling this calls ``_plant``, which creates a file: the refusal must come before anything runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_plant, (str(self.marker),))


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_pickled_object_is_refused_without_running_it(legacy, tmp_path):
    release = weights.get("self-tnet@liberty")
    marker = tmp_path / "ran"
    files = release_files(release, randomised(release), extra={"pca": PlantsAMarker(marker)}, legacy=legacy)
    paths = write(tmp_path / "w", files)
    assert not marker.exists()
    with pytest.raises(weights.UnsafeCheckpointError) as err:
        weights.build_from_files(release, roles(release, paths))
    assert not marker.exists()
    message = str(err.value)
    assert "_plant" in message and "weights_only" in message and "arbitrary" in message
    assert "Instead:" in message and "--expect-sha256" in message
    # the file really would run code when unpickled without the guard
    torch.load(paths["Self-TNet_lib.pt"], weights_only=False)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "HardNetLib+JIT.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    with pytest.raises(weights.UnsafeCheckpointError, match="TorchScript"):
        weights.read_torch_file(path)
    with pytest.raises(weights.UnsafeCheckpointError, match="hardnet-plus@liberty"):
        weights.get("hardnet-plus-jit")
    with pytest.raises(weights.UnsafeCheckpointError, match="sklearn.*hardnet8v2"):
        weights.get("hardnet8-original")


def test_key_map_refuses_what_it_cannot_account_for(tmp_path):
    release = weights.get("sdgmnet@liberty")
    net = randomised(release)
    sd = weights.to_release_layout(release, net)
    path = tmp_path / "model_li.pt"

    def attempt(state, match):
        path.write_bytes(_save({"epoch": 1, "model_state_dict": state, "FPR": 0.1, "opt": {}}, False))
        with pytest.raises(DescbenchError, match=match):
            weights.build_from_files(release, {"weights": path})

    differing = dict(sd)
    differing["features.0.2.weight"] = sd["layer1.2.weight"] + 1
    attempt(differing, "two copies")
    attempt(dict(sd, **{"layer8.0.weight": torch.zeros(1)}), "not in the published layout")
    attempt({k: v for k, v in sd.items() if "layer3.0.weight" not in k and "features.2.0.weight" not in k},
            "missing features.8.weight")
    wrong = dict(sd)
    wrong["layer2.0.bias"] = wrong["features.1.0.bias"] = torch.zeros(31)
    attempt(wrong, "shape")
    path.write_bytes(_save({"epoch": 1, "optimizer": {}}, False))
    with pytest.raises(DescbenchError, match="model_state_dict"):
        weights.build_from_files(release, {"weights": path})
    self_t = weights.get("self-tnet@liberty")
    path.write_bytes(_save({"model_arch": "h8pca128", "state_dict": sd}, False))
    with pytest.raises(DescbenchError, match="h8pca128"):
        weights.build_from_files(self_t, {"weights": path})
    path.write_bytes(_save({"model_arch": "TeacherNet", "S_model_arch": "h8", "S_state_dict": sd}, False))
    with pytest.raises(DescbenchError, match="S_model_arch is 'h8'"):
        weights.build_from_files(self_t, {"weights": path})


def test_hardtfeat_drops_its_sift_keys_explicitly(tmp_path):
    release = weights.get("hardtfeat")
    paths = write(tmp_path, release_files(release, randomised(release)))
    loaded = weights.build_from_files(release, roles(release, paths))
    assert any("SIFT.gx.0.weight" in note for note in loaded.notes)
    assert loaded.info == {"epoch": 2, "container": "state_dict"}


# ------------------------------------------------------------------------------- downloads and checks

def test_download_over_loopback_verifies_and_refuses_tampering(server, tmp_path):
    release = weights.get("cdf@liberty")
    files = release_files(release, randomised(release))
    for name, data in files.items():
        server.serve(f"/repo/{name}", data)
    test_release = pinned(release, files, url=lambda f: (server.url(f"/dead/{f.filename}"),
                                                          server.url(f"/repo/{f.filename}")))
    folder = tmp_path / "weights"
    result = weights.download_release(test_release, folder, http=FAST)
    assert [f.path for f in result.files] == [folder / "cdf@liberty" / n for n in files]
    assert all(f.origin.endswith(f"/repo/{f.path.name}") and f.pinned for f in result.files)
    loaded = weights.load_release(test_release, folder)
    assert loaded.network(patches(2)).shape == (2, 128)
    again = weights.download_release(test_release, folder, http=FAST)
    assert again.reused
    # a local file changed after download is refused at load
    model = folder / "cdf@liberty" / "model.state_dict"
    data = bytearray(model.read_bytes())
    data[-100] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="does not match its pin"):
        weights.load_release(test_release, folder)
    # a mirror serving altered bytes is refused and nothing lands
    server.serve("/repo/model.state_dict", bytes(data))
    fresh = tmp_path / "fresh"
    with pytest.raises(DescbenchError, match="verified copy"):
        weights.download_release(test_release, fresh, http=FAST)
    assert not (fresh / "cdf@liberty" / "model.state_dict").exists()


def test_missing_files_name_the_download_command(tmp_path):
    with pytest.raises(DescbenchError, match="descbench download weights tfeat@liberty"):
        weights.load_release("tfeat@liberty", tmp_path)


def test_git_blob_pins_are_what_git_hash_object_computes():
    assert git_blob(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob
    for release in RELEASES:
        for f in release.files:
            assert f.checksums, f"{release.name}: {f.filename} has no pin"
            for c in f.checksums:
                assert len(c.value) == {"git-blob": 40, "sha256": 64}[c.algorithm]
            if release.repo:  # the authors' repository at the pinned commit comes first
                repo, commit7 = f.source.split(":")[0].split("@")
                assert f.mirrors[0].url.startswith(f"https://raw.githubusercontent.com/{repo}/{commit7}")
                assert len(f.mirrors[0].url.split("/")[5]) == 40  # a full commit id, not a branch
            hf = [i for i, m in enumerate(f.mirrors) if "huggingface.co" in m.url]
            github = [i for i, m in enumerate(f.mirrors) if "github" in m.url]
            assert not hf or not github or max(github) < min(hf)
            assert all(m.filename == f.filename for m in f.mirrors)


def test_training_data_on_hpatches_is_carried_and_checked():
    on_hpatches = {r.name for r in RELEASES if r.trained_on_hpatches}
    assert on_hpatches == {"hardnet++", "sosnet@hpatches_a", "hardnet8v2"}
    splits = {"a": {"train": ["i_a", "v_a"], "test": ["i_b", "v_b"]},
              "full": {"test": ["i_a", "v_a", "i_b", "v_b"]}}
    sos = weights.get("sosnet@hpatches_a")
    assert weights.hpatches_overlap(sos, splits["a"]["test"], splits) is None
    reason = weights.hpatches_overlap(sos, splits["full"]["test"], splits)
    assert "2 of the 4" in reason and "i_a" in reason
    assert "no train list" in weights.hpatches_overlap(sos, ["x"], {"full": {"test": ["x"]}})
    with pytest.raises(DescbenchError, match="--allow-train-overlap"):
        weights.check_evaluation("hardnet++", hpatches_sequences=["i_b"], splits=splits)
    assert "HPatches" in weights.check_evaluation("hardnet++", hpatches_sequences=["i_b"], allow=True)
    with pytest.raises(DescbenchError, match="unverified"):
        weights.check_evaluation("hardnet8v2", hpatches_sequences=["i_b"])
    assert weights.check_evaluation("tfeat@liberty", hpatches_sequences=["i_a"], splits=splits) is None
    assert weights.check_evaluation("tfeat@liberty", ubc_test_set="notredame") is None
    with pytest.raises(DescbenchError, match="trained on liberty"):
        weights.check_evaluation("tfeat@liberty", ubc_test_set="liberty")
    with pytest.raises(DescbenchError, match="trained on yosemite"):
        weights.check_evaluation("hardnet++", ubc_test_set="yosemite")


def test_select_by_pattern_and_unknown_names():
    assert [r.name for r in weights.select(["sosnet@*"])] == [
        "sosnet@liberty", "sosnet@notredame", "sosnet@yosemite", "sosnet@hpatches_a"]
    assert len(weights.select([])) == len(RELEASES)
    with pytest.raises(DescbenchError, match="did you mean"):
        weights.get("tfeat@libery")


# ---------------------------------------------------------------------------------------- CLI, registry

@pytest.fixture
def test_catalogue(monkeypatch, tmp_path):
    """tfeat@liberty and hardnet-plus@liberty pinned to test-made files placed in DIR/."""
    made, releases = {}, dict(weights.RELEASES)
    for name, sub in (("tfeat@liberty", "tfeat"), ("hardnet-plus@liberty", "hardnet/pretrained")):
        release = weights.get(name)
        net = randomised(release)
        files = release_files(release, net)
        write(tmp_path / "DIR" / sub, files)
        releases[name] = pinned(release, files, url=lambda f: ("http://127.0.0.1:9/unused",))
        made[name] = net
    monkeypatch.setattr(weights, "RELEASES", releases)
    return tmp_path, made


def test_cli_download_weights_from_dir(test_catalogue, capsys):
    root, made = test_catalogue
    data = root / "data"
    assert cli.main(["download", "weights", "--from-dir", str(root / "DIR"), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "tfeat@liberty:" in out and "hardnet-plus@liberty:" in out and "git-blob matches test" in out
    assert (data / "weights" / "tfeat@liberty" / "tfeat-liberty.params").is_file()
    net = weights.load_network("tfeat@liberty", data / "weights")
    x = patches(3)
    with torch.no_grad():
        assert torch.allclose(net(x), made["tfeat@liberty"](255.0 * x), atol=1e-6)
    # by name, into another folder; an explicit name that is not in DIR is an error
    other = root / "other"
    assert cli.main(["download", "weights", "tfeat@liberty", "--from-dir", str(root / "DIR"),
                     "--weights-dir", str(other)]) == 0
    assert (other / "tfeat@liberty" / "tfeat-liberty.params").is_file()
    assert cli.main(["download", "weights", "sosnet@liberty", "--from-dir", str(root / "DIR"),
                     "--weights-dir", str(other)]) == 2
    assert "sosnet_32x32_liberty.pth" in capsys.readouterr().err
    # a tampered copy in DIR is reported, not taken
    params = root / "DIR" / "tfeat" / "tfeat-liberty.params"
    params.write_bytes(params.read_bytes()[:-1] + b"\0")
    assert cli.main(["download", "weights", "--from-dir", str(root / "DIR"), "--data", str(root / "d2")]) == 2
    assert "matches no published pin" in capsys.readouterr().err
    assert cli.main(["download", "weights", "--from-dir", str(root / "DIR")]) == 2
    assert "--data DATA" in capsys.readouterr().err


def test_cli_list_and_pins(capsys, tmp_path):
    assert cli.main(["download", "weights", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(f"{r.name}:" in out for r in RELEASES) and "hardnet8-original: refused" in out
    assert "88.43" in out and "git-blob 0f28ae87db5e2fc95ae691faf3aa9c2c631060b2" in out
    assert cli.main(["download", "weights", "tfeat@liberty", "--data", str(tmp_path),
                     "--expect-sha256", "tfeat@liberty=xyz"]) == 2
    assert "64 hex digits" in capsys.readouterr().err
    assert cli.main(["download", "weights", "cdf@liberty", "--data", str(tmp_path),
                     "--expect-sha256", "cdf@liberty/nope.pt=" + "0" * 64]) == 2
    assert "mean_std.pt" in capsys.readouterr().err


def test_released_descriptors_are_registered(test_catalogue, monkeypatch):
    from descbench import registry
    from descbench.evaluate.extract import Extractor
    import descriptors.released as released

    assert [d.name for d in released.DESCRIPTORS] == list(weights.catalogue.RELEASES)
    desc = registry.get("hardnet-plus@liberty")
    assert desc.learned and desc.recipe is None and desc.dim == 128
    assert "released weights" in desc.citation and "MIT" in desc.citation and "Liberty" in desc.citation
    assert "DagnyT/hardnet@35bc1d79910c4477e61ca486a4712b3b7496d43e" in desc.source
    root, made = test_catalogue
    assert cli.main(["download", "weights", "--from-dir", str(root / "DIR"), "--data", str(root / "data")]) == 0
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(root / "data" / "weights"))
    network = registry.get("tfeat@liberty").network()
    uint8 = np.random.default_rng(0).integers(0, 256, (5, 65, 65), dtype=np.uint8)
    out = Extractor(registry.get("tfeat@liberty"), network=network, batch_size=2)(uint8)
    assert out.shape == (5, 128) and np.all(np.abs(out) <= 1)


def test_workflow_helpers_pick_test_sets_and_splits():
    sets = ["liberty", "notredame", "yosemite"]
    assert weights.ubc_test_sets("hynet@liberty", sets) == ["notredame", "yosemite"]
    assert weights.ubc_test_sets("hardnet++", sets) == []
    assert weights.ubc_test_sets("hardnet8v2", sets) == ["yosemite"]
    assert weights.ubc_test_sets("tfeat@liberty", ["mini_liberty", "mini_yosemite"]) == ["mini_liberty",
                                                                                          "mini_yosemite"]
    assert weights.hpatches_split_for("hynet@liberty", "full") == "full"
    assert weights.hpatches_split_for("sosnet@hpatches_a", "full") == "a"
    assert weights.hpatches_split_for("hardnet++", "full") is None
    assert weights.hpatches_split_for("hardnet8v2", "a") is None


def test_released_preset_lists_every_release():
    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[1] / "config" / "released.yaml").read_text())
    assert cfg["released"] == list(weights.catalogue.RELEASES)
    assert cfg["methods"] == [] and cfg["data"]["source"] == "download"


def _integrated() -> bool:
    from dataclasses import fields

    from descbench.registry import Descriptor

    return "released" in {f.name for f in fields(Descriptor)}


@pytest.mark.skipif(not _integrated(), reason="needs the registry/evaluate integration of released weights")
def test_evaluate_released_weights_on_mini_data(tmp_path, capsys):
    """The issue's check: download weights --from-dir (test-made files, pinned with --expect-sha256), then
    evaluate by name on the mini data; training-data overlap is refused before any data is read."""
    import json

    from descbench.data import mini

    data, wdir = tmp_path / "data", tmp_path / "DIR"
    mini.make_mini(data, scale=0.25)
    assert cli.main(["prepare", "ubc", "mini_notredame", "--data", str(data)]) == 0
    assert cli.main(["prepare", "hpatches", "--data", str(data)]) == 0
    pins = []
    for name in ("tfeat@liberty", "hardnet-plus@liberty"):
        release = weights.get(name)
        for filename, content in release_files(release, randomised(release)).items():
            (wdir / name).mkdir(parents=True, exist_ok=True)
            (wdir / name / filename).write_bytes(content)
            pins += ["--expect-sha256", f"{name}={hashlib.sha256(content).hexdigest()}"]
    assert cli.main(["download", "weights", "tfeat@liberty", "hardnet-plus@liberty", "--from-dir", str(wdir),
                     "--data", str(data), *pins]) == 0
    out = tmp_path / "out"
    assert cli.main(["evaluate", "ubc", "--descriptor", "tfeat@liberty", "--data", str(data),
                     "--test-set", "mini_notredame", "--out", str(out / "ubc")]) == 0
    summary = json.loads((out / "ubc" / "summary.json").read_text())
    assert summary["released"]["name"] == "tfeat@liberty" and summary["released"]["licence"] == "MIT"
    assert cli.main(["evaluate", "hpatches", "--descriptor", "hardnet-plus@liberty", "--data", str(data),
                     "--tasks", "matching", "--out", str(out / "hp")]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", "ubc", "--descriptor", "tfeat@liberty", "--data", str(data),
                     "--test-set", "liberty", "--out", str(out / "refused")]) == 2
    assert "trained on liberty" in capsys.readouterr().err
    assert cli.main(["evaluate", "hpatches", "--descriptor", "hardnet++", "--data", str(data),
                     "--out", str(out / "refused2")]) == 2
    assert "--allow-train-overlap" in capsys.readouterr().err
