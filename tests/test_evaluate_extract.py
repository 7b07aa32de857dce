"""Descriptor extraction (resize, network input contract), descriptor files, SIFT/RootSIFT, CLI."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from descbench import cli, registry
from descbench.errors import DescbenchError
from descbench.data import hpatches_tasks
from descbench.evaluate import extract
from descbench.evaluate.hpatches import IMAGE_TYPES, HPatchesDescriptors

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


def read_back(path, expected_lengths=None) -> dict[str, np.ndarray]:
    """A descriptor folder through the reader of `evaluate hpatches --descriptor-files`: name -> (16, N, dim)."""
    desc = HPatchesDescriptors.from_dir(path, expected_lengths)
    return {name: np.stack([desc.sequence(name, image) for image in range(len(IMAGE_TYPES))])
            for name in desc.names}


@pytest.mark.parametrize("fmt, delimiter", [("csv", ","), ("csv", ";"), ("npy", ",")])
def test_descriptor_dir_round_trip(tmp_path, fmt, delimiter):
    data = {"i_a": RNG.normal(size=(16, 4, 3)).astype(np.float32),
            "v_b": RNG.normal(size=(16, 2, 3)).astype(np.float32)}
    extract.write_descriptor_dir(tmp_path, data, fmt=fmt, delimiter=delimiter)
    assert (tmp_path / "i_a" / f"t5.{fmt}").is_file()
    back = read_back(tmp_path, {"i_a": 4, "v_b": 2})
    assert set(back) == set(data)
    for k in data:
        assert np.array_equal(back[k], data[k])  # %.9g round-trips float32


def test_descriptor_dir_errors(tmp_path):
    data = {"i_a": np.ones((16, 4, 3), np.float32)}
    extract.write_descriptor_dir(tmp_path, data)
    assert read_back(tmp_path, {"i_a": 3})["i_a"].shape == (16, 4, 3)  # the task files use patches 0..2 only
    with pytest.raises(DescbenchError, match=r"i_a: 4 descriptors per file, but the task files use patch index 4 "
                                             r"of that sequence \(>= 5 patches needed"):
        read_back(tmp_path, {"i_a": 5})
    with pytest.raises(DescbenchError, match="has no descriptors for sequences v_b that the task files use"):
        read_back(tmp_path, {"i_a": 4, "v_b": 2})
    (tmp_path / "i_a" / "h3.csv").write_text("1 2 3\n1 2 3\n1 2 3\n1 2 3\n")
    with pytest.raises(DescbenchError, match="delimiter"):
        read_back(tmp_path)
    (tmp_path / "i_a" / "h3.csv").unlink()
    with pytest.raises(DescbenchError, match="h3.csv"):
        read_back(tmp_path)


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
    hpatches_tasks.write_task_files(hp_dir / "tasks", refs, splits, n_pairs=200, n_queries=10, n_distractors=20)
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


# ---------------------------------------------------------------------------- misbehaving plug-ins
def _plugin(describe, dim=3, side=8):
    return registry.Descriptor(name="plug", citation="t", patch_size=side, dim=dim, describe=describe)


def _raises(p):
    raise ZeroDivisionError("division by zero in my plug-in")


@pytest.mark.parametrize("describe, message", [
    (_raises, r"describe failed on a batch of 2 patches of 8x8 uint8 \(ZeroDivisionError: division by zero"),
    (lambda p: [["a", "b", "c"]] * len(p), r"returned list of dtype <U1 \(not real numbers\)"),
    (lambda p: np.full((len(p), 3), "1.5"), r"dtype <U3 \(not real numbers\)"),
    (lambda p: None, r"returned NoneType of dtype object"),
    (lambda p: np.zeros((len(p), 3), np.complex64), r"dtype complex64"),
    (lambda p: np.zeros((len(p), 3), bool), r"dtype bool"),
    (lambda p: np.zeros((len(p), 3), object), r"dtype object"),
    (lambda p: torch.zeros(len(p), 3), r"returned a torch.Tensor"),
    (lambda p: np.zeros(len(p) * 3, np.float32), r"returned shape \(6,\) for 2 patches"),
    (lambda p: np.zeros((len(p) + 1, 3), np.float32), r"returned shape \(3, 3\) for 2 patches"),
    (lambda p: np.full((len(p), 3), np.inf, np.float32), r"produced NaN or Inf"),
    (lambda p: np.full((len(p), 3), 1e300), r"produced NaN or Inf"),  # beyond float32
])
def test_misbehaving_plugin_is_a_clear_error_naming_it(describe, message):
    with pytest.raises(DescbenchError, match=message) as info:
        extract.Extractor(_plugin(describe))(np.zeros((2, 8, 8), np.uint8))
    assert "'plug'" in str(info.value) and __file__ in str(info.value)  # the plug-in and its file


def test_plugin_output_in_another_real_dtype_is_accepted():
    out = extract.Extractor(_plugin(lambda p: np.ones((len(p), 3), np.float64)))(np.zeros((2, 8, 8), np.uint8))
    assert out.dtype == np.float32 and np.all(out == 1)
    out = extract.Extractor(_plugin(lambda p: np.ones((len(p), 3), np.uint8)))(np.zeros((2, 8, 8), np.uint8))
    assert out.dtype == np.float32 and np.all(out == 1)


def test_network_that_does_not_fit_its_input_is_a_clear_error():
    desc = registry.Descriptor(name="net", citation="t", patch_size=16, dim=2,
                               network=lambda: torch.nn.Linear(32 * 32, 2))
    with pytest.raises(DescbenchError, match=r"'net' \(.*test_evaluate_extract\.py\): network failed.*"
                                             r"RuntimeError"):
        extract.Extractor(desc, desc.network())(np.zeros((2, 65, 65), np.uint8))


def _npy_bytes(arr, **kwargs):
    import io

    buf = io.BytesIO()
    np.save(buf, arr, **kwargs)
    return buf.getvalue()


GOOD_NPY = _npy_bytes(np.ones((4, 3), np.float32))


@pytest.mark.parametrize("content, message", [
    (b"", r"cannot read descriptor file .*h3\.npy \(No data left in file\)"),
    (GOOD_NPY[:60], r"cannot read descriptor file .*h3\.npy"),
    (GOOD_NPY[:-5], r"descriptor file .*h3\.npy is cut short: its header promises 4 x 3 float32 \(48 bytes of data\) but it holds 43"),
    (b"1,2,3\n4,5,6\n", r"h3\.npy .*no object arrays or pickles"),
    (_npy_bytes(np.array([[1, "x"], [2, None]], dtype=object), allow_pickle=True),
     r"h3\.npy \(Object arrays cannot be loaded"),
    (_npy_bytes(np.full((4, 3), "1.0")), r"h3\.npy holds <U3 values"),
    (_npy_bytes(np.zeros((4, 3), np.complex64)), r"h3\.npy holds complex64 values"),
    (_npy_bytes(np.full((4, 3), np.nan, np.float32)), r"sequence i_a contain NaN or Inf \(.*h3\.npy\)"),
])
def test_corrupt_npy_descriptor_file_is_a_clear_error(tmp_path, content, message):
    extract.write_descriptor_dir(tmp_path, {"i_a": np.ones((16, 4, 3), np.float32)}, fmt="npy")
    (tmp_path / "i_a" / "h3.npy").write_bytes(content)
    with pytest.raises(DescbenchError, match=message):
        read_back(tmp_path, {"i_a": 4})


def test_binary_or_nan_csv_descriptor_file_is_a_clear_error(tmp_path):
    extract.write_descriptor_dir(tmp_path, {"i_a": np.ones((16, 4, 3), np.float32)})
    (tmp_path / "i_a" / "e2.csv").write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(DescbenchError, match=r"e2\.csv: it is not text"):
        read_back(tmp_path)
    (tmp_path / "i_a" / "e2.csv").write_text("1,2,nan\n" * 4)
    with pytest.raises(DescbenchError, match=r"sequence i_a contain NaN or Inf \(.*e2\.csv\)"):
        read_back(tmp_path)


# ---------------------------------------------------------------------------- result sets and --out
def _no_work(monkeypatch):
    """Fail the test if any descriptor is computed: --out must be checked before the work."""
    def refuse(*args, **kwargs):
        pytest.fail("descriptors were computed before --out was checked")

    monkeypatch.setattr(extract.Extractor, "__call__", refuse)


def test_cli_result_set_is_written_as_a_whole(tmp_path, monkeypatch, capsys):
    import errno

    from descbench.evaluate import hpatches as hp

    data = tmp_path / "data"
    make_data(data)
    hp_out, ubc_out = tmp_path / "hp", tmp_path / "ubc"
    hp_args = ["evaluate", "hpatches", "--descriptor", "raw", "--data", str(data), "--out", str(hp_out)]
    ubc_args = ["evaluate", "ubc", "--descriptor", "raw", "--data", str(data), "--test-set", "tiny",
                "--out", str(ubc_out)]
    assert cli.main(hp_args) == 0 and cli.main(ubc_args) == 0
    before = {p: p.read_bytes() for out in (hp_out, ubc_out) for p in out.iterdir()}
    assert len(before) == 6
    capsys.readouterr()

    def broken(path, obj):  # the last file of the set fails, e.g. an I/O error
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(hp, "write_json", broken)
    for args in (hp_args, ubc_args, hp_args[:-1] + [str(tmp_path / "new")]):
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert "Input/output error [EIO]" in err and "summary.json" in err and "Traceback" not in err
    assert {p: p.read_bytes() for out in (hp_out, ubc_out) for p in out.iterdir()} == before
    assert not (tmp_path / "new").exists()  # no partial set that looks like a result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "hp", "ubc"]  # no staging left


def test_cli_checks_out_before_any_work(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    make_data(data)
    _no_work(monkeypatch)
    (tmp_path / "afile").write_text("x")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    cases = [(tmp_path / "afile" / "sub", r"afile is a file, not a folder; choose another --out"),
             (tmp_path / "afile", r"afile exists and is not a folder"),
             (mine, r"mine holds files that are not HPatches results \(notes.txt\)")]
    for out, message in cases:
        assert cli.main(["evaluate", "hpatches", "--descriptor", "raw", "--data", str(data),
                         "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert re.search(message, err) and "Traceback" not in err, err
    assert cli.main(["evaluate", "ubc", "--descriptor", "raw", "--data", str(data), "--test-set", "tiny",
                     "--out", str(mine)]) == 2
    assert "not UBC results (notes.txt)" in capsys.readouterr().err
    assert cli.main(["export", "--descriptor", "raw", "--data", str(data), "--out", str(mine)]) == 2
    assert "not exported descriptors (notes.txt)" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_cli_refuses_a_read_only_out_before_any_work(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    make_data(data)
    _no_work(monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert cli.main(["evaluate", "hpatches", "--descriptor", "raw", "--data", str(data),
                         "--out", str(locked / "scores")]) == 2
    finally:
        locked.chmod(0o755)
    assert "not writable" in capsys.readouterr().err


def test_cli_refuses_an_unwritable_out_before_any_work(tmp_path, monkeypatch, capsys):
    import errno
    import tempfile as tempfile_module

    from descbench import fileio

    data = tmp_path / "data"
    make_data(data)
    _no_work(monkeypatch)
    real_mkdtemp = tempfile_module.mkdtemp

    def read_only(*args, dir=None, **kwargs):  # what a read-only mount answers (even to root)
        if dir is not None and Path(dir) == tmp_path / "ro":
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real_mkdtemp(*args, dir=dir, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(fileio.tempfile, "mkdtemp", read_only)
    for kind in (["hpatches"], ["ubc", "--test-set", "tiny"]):
        assert cli.main(["evaluate", *kind, "--descriptor", "raw", "--data", str(data),
                         "--out", str(tmp_path / "ro" / "scores")]) == 2
        err = capsys.readouterr().err
        assert "Read-only file system [EROFS]" in err and "choose another --out" in err


def test_cli_export_is_written_as_a_whole(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    make_data(data)
    out = tmp_path / "exported"
    calls = []
    real = extract.save_npy

    def fail_late(path, array):
        calls.append(path)
        if len(calls) == 20:  # in the second sequence
            raise RuntimeError("simulated crash")
        real(path, array)

    monkeypatch.setattr(extract, "save_npy", fail_late)
    with pytest.raises(RuntimeError):
        cli.main(["export", "--descriptor", "raw", "--data", str(data), "--out", str(out), "--format", "npy"])
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    monkeypatch.undo()
    assert cli.main(["export", "--descriptor", "raw", "--data", str(data), "--out", str(out)]) == 0
    assert cli.main(["export", "--descriptor", "raw", "--data", str(data), "--out", str(out),
                     "--format", "npy"]) == 0  # an earlier export is replaced
    assert sorted(p.name for p in (out / "i_x").iterdir()) == sorted(f"{t}.npy" for t in IMAGE_TYPES)


def test_cli_degenerate_warning_is_printed_once(tmp_path, monkeypatch, caplog, capsys):
    data = tmp_path / "data"
    make_data(data)

    def nearly_constant(patches):  # one distinct descriptor per batch
        out = np.ones((len(patches), 4), np.float32)
        out[0] = np.arange(4)
        return out

    found = registry.discovery()
    desc = registry.Descriptor(name="nearly-constant", citation="t", patch_size=65, dim=4,
                               describe=nearly_constant)
    monkeypatch.setattr(registry, "_CACHE", registry.Discovery(
        {**found.descriptors, desc.name: desc}, {**found.origins, desc.name: "test"}, ()))
    for name, expected in (("nearly-constant", 1), ("raw", 0)):
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert cli.main(["evaluate", "hpatches", "--descriptor", name, "--data", str(data),
                             "--batch-size", "16", "--out", str(tmp_path / name)]) == 0
        assert sum("degenerate descriptor" in r.getMessage() for r in caplog.records) == expected
    summary = json.loads((tmp_path / "nearly-constant" / "summary.json").read_text())
    assert summary["retrieval"] == pytest.approx(1.0)  # the official score stands; only a warning
