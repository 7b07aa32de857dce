"""The offline mini data: make-mini writes the original formats, the readers give back exactly what the
generator made, the task files are consistent, and the same seed gives the same bytes.

Generated once per session at a reduced size (``scale``); the CLI uses the full size.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from descbench import cli
from descbench.data import hpatches, mini, ubc
from descbench.errors import DescbenchError
from descbench.evaluate import tasks

SEED = 3
SCALE = 0.2


@pytest.fixture(scope="session")
def made_by_cli(tmp_path_factory) -> tuple[Path, mini.MiniData, str]:
    """``descbench make-mini --data ROOT --seed 3``, at the reduced size: (root, what was made, stdout)."""
    root = tmp_path_factory.mktemp("mini")
    full_size = mini.make_mini
    made: list[mini.MiniData] = []

    def reduced(out_root, seed):
        made.append(full_size(out_root, seed=seed, scale=SCALE))
        return made[-1]

    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setattr(mini, "make_mini", reduced)
        assert cli.main(["make-mini", "--data", str(root), "--seed", str(SEED)]) == 0
    return root, made[0], stdout.getvalue()


@pytest.fixture(scope="session")
def made(made_by_cli) -> tuple[Path, mini.MiniData]:
    return made_by_cli[:2]


@pytest.fixture(scope="session")
def prepared(made) -> Path:
    root, _ = made
    for sub in ("ubc", "hpatches"):
        assert cli.main(["prepare", sub, "--root", str(root)]) == 0
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_ubc_mini_sets_round_trip(made, prepared):
    _, generated = made
    assert sorted(generated.ubc) == ["mini_liberty", "mini_notredame", "mini_yosemite"]
    for name, intended in generated.ubc.items():
        loaded = ubc.load_ubc(prepared, name)
        np.testing.assert_array_equal(loaded.patches, intended["patches"])
        np.testing.assert_array_equal(loaded.labels, intended["labels"])
        m50 = intended["m50"]
        np.testing.assert_array_equal(loaded.pairs, np.stack([m50[:, 0], m50[:, 3], m50[:, 1] == m50[:, 4]], 1))
        # the reader chose the larger of the two pair files, which has equal matches and non-matches
        raw = ubc.raw_set_dir(prepared, name)
        sizes = sorted(int(p.name.split("_")[1]) for p in raw.glob("m50_*_0.txt"))
        assert len(sizes) == 2 and len(loaded.pairs) == sizes[-1]
        assert intended["m50_file"] == f"m50_{sizes[-1]}_{sizes[-1]}_0.txt"
        assert loaded.pairs[:, 2].sum() * 2 == len(loaded.pairs)
        views = np.bincount(loaded.labels)
        assert views.min() >= 2 and views.max() <= 5
        assert np.all(np.diff(loaded.labels) >= 0)  # patches of a point are consecutive
        n_tiles = len(list(raw.glob("patches*.bmp")))
        assert n_tiles == -(-len(loaded.labels) // 256)
    photos = [photo for scene in mini.UBC_SCENES.values() for photo in scene] + list(mini.HPATCHES_SCENES.values())
    assert len(photos) == len(set(photos))  # every set and sequence has its own photos


def test_hpatches_mini_round_trip_and_levels(made, prepared):
    _, generated = made
    loaded = hpatches.load_sequences(prepared)
    assert sorted(loaded) == sorted(generated.hpatches)
    assert sum(n.startswith("i_") for n in loaded) == 4 and sum(n.startswith("v_") for n in loaded) == 4
    for name, stack in generated.hpatches.items():
        np.testing.assert_array_equal(loaded[name], stack)
    # jitter grows Easy < Hard < Tough: targets decorrelate further from the reference patch (pooled over
    # every sequence; normalised correlation, so the i_ sequences' illumination change does not mask it)
    def standardised(x):
        x = x.reshape(*x.shape[:-2], -1).astype(np.float64)
        x = x - x.mean(-1, keepdims=True)
        return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-9)

    decorrelation = np.zeros(3)
    for stack in generated.hpatches.values():
        ref = standardised(stack[0])
        for level in range(3):
            targets = standardised(stack[1 + 5 * level:6 + 5 * level])
            decorrelation[level] += (1 - (targets * ref).sum(-1)).sum()
    assert decorrelation[0] < decorrelation[1] < decorrelation[2], decorrelation


def test_mini_splits_and_task_files_are_consistent(made, prepared):
    _, generated = made
    task_dir = hpatches.tasks_dir(prepared)
    splits = tasks.load_splits(task_dir)
    assert splits == generated.splits
    names = sorted(generated.hpatches)
    illum = [n for n in names if n.startswith("i_")]
    view = [n for n in names if n.startswith("v_")]
    for key in ("a", "b", "c"):
        split = splits[key]
        assert split["name"] == key
        assert sorted(split["test"] + split["train"]) == names and not set(split["test"]) & set(split["train"])
        assert sum(s.startswith("i_") for s in split["test"]) == len(illum) // 2
        assert sum(s.startswith("v_") for s in split["test"]) == len(view) // 2
    assert splits["illum"]["test"] == illum and splits["view"]["test"] == view
    assert sorted(splits["full"]["test"]) == names
    assert all("train" not in splits[k] for k in ("illum", "view", "full"))
    n_of = {name: stack.shape[1] for name, stack in generated.hpatches.items()}
    for key, split in splits.items():
        test = set(split["test"])
        for kind in tasks.VERIF_KINDS:
            table = tasks.read_pairs(task_dir, kind, key)
            assert len(table) == round(mini.TASK_PAIRS * SCALE)
            for seq, idx, t in ((table.seq1, table.idx1, table.t1), (table.seq2, table.idx2, table.t2)):
                seq_names = np.array(table.names)[seq]
                assert set(seq_names) <= test
                assert np.all(idx < np.array([n_of[s] for s in seq_names])) and np.all(idx >= 0)
                assert t.min() >= 0 and t.max() <= 4
        for patch_list in (tasks.read_queries(task_dir, key), tasks.read_distractors(task_dir, key)):
            seq_names = np.array(patch_list.names)[patch_list.seq]
            assert len(patch_list) > 0 and set(seq_names) <= test
            assert np.all(patch_list.idx < np.array([n_of[s] for s in seq_names]))


def test_same_seed_gives_identical_bytes_other_seed_differs(made, tmp_path):
    root, _ = made
    mini.make_mini(tmp_path, seed=SEED, scale=SCALE)
    first, second = _files(root / "raw"), _files(tmp_path / "raw")
    assert sorted(first) == sorted(second)
    assert [k for k in first if first[k] != second[k]] == []
    other = mini.make_ubc_set("mini_liberty", SEED + 1, 0, SCALE)
    assert not np.array_equal(other["patches"][:10], made[1].ubc["mini_liberty"]["patches"][:10])


def test_make_mini_refuses_foreign_hpatches_folder(tmp_path):
    (hpatches.raw_release_dir(tmp_path) / "i_real").mkdir(parents=True)
    with pytest.raises(DescbenchError, match="was not written by make-mini"):
        mini.make_mini(tmp_path, seed=0, scale=SCALE)
    assert not (tmp_path / "raw" / "ubc").exists()


def test_make_mini_failure_leaves_nothing(tmp_path, monkeypatch):
    real = mini.make_ubc_set

    def fail_on_second(name, *args):
        if name == "mini_notredame":
            raise DescbenchError("simulated failure")
        return real(name, *args)

    monkeypatch.setattr(mini, "make_ubc_set", fail_on_second)
    with pytest.raises(DescbenchError, match="simulated failure"):
        mini.make_mini(tmp_path, seed=0, scale=0.05)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() or p.name.startswith(".")]
    assert leftovers == []


def test_mini_record_matches_what_was_written(made):
    root, generated = made
    record = json.loads((root / "raw" / mini.MINI_RECORD).read_text())
    assert record == json.loads(json.dumps(generated.record))
    assert record["seed"] == SEED and record["scale"] == SCALE
    assert {n: v["patches"] for n, v in record["hpatches"].items()} == {
        n: v.shape[1] for n, v in generated.hpatches.items()}


def test_cli_make_mini_prints_what_it_made(made_by_cli):
    root, generated, out = made_by_cli
    for name, intended in generated.ubc.items():
        assert (f"{name}: {len(intended['patches'])} patches, {len(np.unique(intended['labels']))} 3D points, "
                f"pairs {intended['m50_file']} -> {root / 'raw' / 'ubc' / name}/") in out
    counts = [stack.shape[1] for stack in generated.hpatches.values()]
    assert (f"hpatches: 8 sequences, N {min(counts)}..{max(counts)} ({sum(counts)} patches per image type) "
            f"-> {root / 'raw' / 'hpatches-release'}/") in out
    assert (f"hpatches-sequences: 4 sequences (2 i_, 2 v_), 320x240, 6 images + 5 homographies each "
            f"-> {root / 'raw' / 'hpatches-sequences-release'}/") in out
    assert sorted(p.name for p in (root / "raw" / "hpatches-sequences-release").iterdir()) == sorted(
        generated.record["hpatches_sequences"])
    assert f"descbench prepare ubc --data {root}" in out
    assert f"descbench prepare hpatches-sequences --data {root}" in out
