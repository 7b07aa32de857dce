"""Descriptor extraction (resize, network input contract), descriptor files, SIFT/RootSIFT, CLI."""

import json

import numpy as np
import pytest
import torch

from descbench import cli, registry
from descbench.errors import DescbenchError
from descbench.evaluate import extract, tasks
from descbench.evaluate.hpatches import IMAGE_TYPES

RNG = np.random.default_rng(0)


class Recorder(torch.nn.Module):
    """A 'network' that records its input and returns the patch mean and std as a 2-D descriptor."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        flat = x.flatten(1)
        return torch.stack([flat.mean(1), flat.std(1)], dim=1)


def learned(side=32):
    return registry.Descriptor(name="rec", citation="test", patch_size=side, dim=2,
                               network=lambda: Recorder())


def test_network_input_is_resized_float_in_unit_range_batched():
    net = Recorder()
    ex = extract.Extractor(learned(), net, batch_size=3)
    patches = RNG.integers(0, 256, (7, 65, 65), dtype=np.uint8)
    out = ex(patches)
    assert out.shape == (7, 2) and out.dtype == np.float32
    assert [tuple(x.shape) for x in net.seen] == [(3, 1, 32, 32)] * 2 + [(1, 1, 32, 32)]
    import cv2
    expected = cv2.resize(patches[4], (32, 32), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    assert np.allclose(net.seen[1][1, 0].numpy(), expected)
    area = extract.Extractor(learned(), Recorder(), interpolation="area")
    area(patches[:1])
    assert not np.allclose(area.network.seen[0][0, 0].numpy(), net.seen[0][0, 0].numpy())


def test_extractor_errors():
    with pytest.raises(DescbenchError, match="--model"):
        extract.Extractor(learned())
    with pytest.raises(DescbenchError, match="interpolation"):
        extract.Extractor(registry.get("raw"), interpolation="lanczos9")
    bad = registry.Descriptor(name="bad", citation="t", patch_size=8, dim=3,
                              describe=lambda p: np.full((len(p), 3), np.nan, np.float32))
    with pytest.raises(DescbenchError, match="NaN or Inf"):
        extract.Extractor(bad)(np.zeros((2, 8, 8), np.uint8))
    wrong = registry.Descriptor(name="wrong", citation="t", patch_size=8, dim=3,
                                describe=lambda p: np.zeros((len(p), 4), np.float32))
    with pytest.raises(DescbenchError, match="dim=3"):
        extract.Extractor(wrong)(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DescbenchError, match="exactly one"):
        extract.make_extractor()


def test_sift_and_rootsift():
    patches = RNG.integers(0, 256, (3, 65, 65), dtype=np.uint8)
    patches[2] = 128  # flat patch
    sift = registry.get("sift").describe(patches)
    root = registry.get("rootsift").describe(patches)
    assert sift.shape == root.shape == (3, 128)
    assert np.all(sift == np.round(sift)) and sift.max() <= 255  # OpenCV's integer-valued SIFT
    assert np.allclose(np.linalg.norm(root[:2], axis=1), 1, atol=1e-5)
    l1 = sift[0] / sift[0].sum()
    assert np.allclose(root[0], np.sqrt(l1) / np.linalg.norm(np.sqrt(l1)), atol=1e-6)
    assert np.all(np.isfinite(root)) and not np.any(root[2])  # a flat patch has no gradients
    # UBC-size patches work too
    assert registry.get("sift").describe(patches[:, :64, :64]).shape == (3, 128)


@pytest.mark.parametrize("fmt, delimiter", [("csv", ","), ("csv", ";"), ("npy", ",")])
def test_descriptor_dir_round_trip(tmp_path, fmt, delimiter):
    data = {"i_a": RNG.normal(size=(16, 4, 3)).astype(np.float32),
            "v_b": RNG.normal(size=(16, 2, 3)).astype(np.float32)}
    extract.write_descriptor_dir(tmp_path, data, fmt=fmt, delimiter=delimiter)
    assert (tmp_path / "i_a" / f"t5.{fmt}").is_file()
    back = extract.load_descriptor_dir(tmp_path, {"i_a": 4, "v_b": 2})
    assert set(back) == set(data)
    for k in data:
        assert np.array_equal(back[k], data[k])  # %.9g round-trips float32


def test_descriptor_dir_errors(tmp_path):
    data = {"i_a": np.ones((16, 4, 3), np.float32)}
    extract.write_descriptor_dir(tmp_path, data)
    with pytest.raises(DescbenchError, match="has 5 patches"):
        extract.load_descriptor_dir(tmp_path, {"i_a": 5})
    (tmp_path / "i_a" / "h3.csv").write_text("1 2 3\n1 2 3\n1 2 3\n1 2 3\n")
    with pytest.raises(DescbenchError, match="delimiter"):
        extract.load_descriptor_dir(tmp_path)
    (tmp_path / "i_a" / "h3.csv").unlink()
    with pytest.raises(DescbenchError, match="h3.csv"):
        extract.load_descriptor_dir(tmp_path)


# ---------------------------------------------------------------------------- CLI end to end
def make_data(root):
    """Prepared arrays of a tiny DATA root: 2 HPatches sequences + task files, one UBC set."""
    hp_dir = root / "hpatches"
    hp_dir.mkdir(parents=True)
    refs = {}
    for name, n in (("i_x", 30), ("v_y", 25)):
        base = RNG.integers(0, 256, (n, 65, 65)).astype(np.float64)
        stack = np.stack([np.clip(base + RNG.normal(0, 3 * (k > 0), base.shape), 0, 255)
                          for k in range(16)]).astype(np.uint8)
        np.save(hp_dir / f"{name}.npy", stack)
        refs[name] = stack[0]
    splits = {"full": {"name": "full", "test": ["i_x", "v_y"]}}
    tasks.write_task_files(hp_dir / "tasks", refs, splits, n_pairs=200, n_queries=10, n_distractors=20)
    (hp_dir / "tasks" / "splits.json").write_text(json.dumps(splits))
    ubc_dir = root / "ubc" / "tiny"
    ubc_dir.mkdir(parents=True)
    labels = np.repeat(np.arange(20), 2)
    patches = RNG.integers(0, 256, (40, 64, 64)).astype(np.uint8)
    patches[1::2] = np.clip(patches[::2].astype(int) + RNG.integers(-5, 6, (20, 64, 64)), 0, 255)
    pairs = np.array([[2 * i, 2 * i + 1, 1] for i in range(20)] + [[2 * i, (2 * i + 3) % 40, 0]
                                                                  for i in range(20)])
    np.save(ubc_dir / "patches.npy", patches)
    np.save(ubc_dir / "labels.npy", labels.astype(np.int64))
    np.save(ubc_dir / "pairs_100k.npy", pairs.astype(np.int64))


def test_cli_evaluate_hpatches_ubc_and_export(tmp_path, capsys):
    make_data(tmp_path / "data")
    out = tmp_path / "scores"
    assert cli.main(["evaluate", "hpatches", "--descriptor", "raw", "--data", str(tmp_path / "data"),
                     "--split", "full", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verification" in printed and "retrieval" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"verification", "matching", "retrieval", "levels", "split", "convention",
                            "descriptor"}
    assert all(0 <= summary[t] <= 1 for t in ("verification", "matching", "retrieval"))
    assert (out / "retrieval.csv").read_text().startswith("query,sequence,idx,level,pool,ap\n")
    # exported files evaluate to the same numbers
    exported = tmp_path / "exported" / "raw"
    assert cli.main(["export", "--descriptor", "raw", "--data", str(tmp_path / "data"),
                     "--out", str(exported)]) == 0
    assert sorted(p.name for p in (exported / "i_x").iterdir()) == sorted(f"{t}.csv" for t in IMAGE_TYPES)
    out2 = tmp_path / "scores2"
    assert cli.main(["evaluate", "hpatches", "--descriptors", str(exported), "--data",
                     str(tmp_path / "data"), "--out", str(out2), "--tasks", "matching"]) == 0
    again = json.loads((out2 / "summary.json").read_text())
    assert again["matching"] == pytest.approx(summary["matching"], abs=1e-12)
    assert "verification" not in again
    # UBC
    out3 = tmp_path / "ubc"
    assert cli.main(["evaluate", "ubc", "--descriptor", "rootsift", "--data", str(tmp_path / "data"),
                     "--test-set", "tiny", "--out", str(out3)]) == 0
    assert "FPR95" in capsys.readouterr().out
    ubc = json.loads((out3 / "summary.json").read_text())
    assert ubc["n_pairs"] == 40 and 0 <= ubc["fpr95"] <= 1 and ubc["convention"] == "hardnet"
    assert (out3 / "pairs.csv").read_text().startswith("idx1,idx2,point1,point2,is_match,distance\n")
    # user errors exit 2 with a message
    assert cli.main(["evaluate", "hpatches", "--descriptor", "raw", "--data", str(tmp_path / "data"),
                     "--split", "nope"]) == 2
    assert "unknown split" in capsys.readouterr().err
