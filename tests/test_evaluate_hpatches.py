"""HPatches metrics and tie rules against hand-computed cases (docs/protocols.md §1.6-1.9)."""

import json

import numpy as np
import pytest

from descbench.errors import DescbenchError
from descbench.evaluate import hpatches as hp
from descbench.evaluate import tasks
from descbench.evaluate.ranking import average_precision, negatives_before_positives, roc_auc

PY = hp.convention_for("python")
ML = hp.convention_for("matlab")


def task_files(task_dir, split):
    return tasks.read_task_files(task_dir, split["name"])


# ---------------------------------------------------------------------------- AP definitions
def test_trapezoid_and_trec_ap_hand_values():
    # positives at ranks 1, 3, 10, 50, 100 of a list: negatives before them 0, 1, 7, 46, 95
    before = np.array([0, 1, 7, 46, 95])
    trec = (1 + 2 / 3 + 3 / 10 + 4 / 50 + 5 / 100) / 5
    trap = ((1 + 1) / 2 + (2 / 3 + 1 / 2) / 2 + (3 / 10 + 2 / 9) / 2 + (4 / 50 + 3 / 49) / 2
            + (5 / 100 + 4 / 99) / 2) / 5
    assert average_precision(before, 5, "trec") == pytest.approx(trec)  # 0.419
    assert average_precision(before, 5, "trapezoid") == pytest.approx(trap)  # 0.392
    # one positive at rank 2: TREC 1/2, trapezoid (1/2 + ~0) / 2
    assert average_precision(np.array([1]), 1, "trec") == pytest.approx(0.5)
    assert average_precision(np.array([1]), 1, "trapezoid") == pytest.approx(0.25)


def test_ap_matches_the_explicit_precision_recall_curve():
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.3
    tp = np.concatenate([[0], np.cumsum(labels)])
    fp = np.concatenate([[0], np.cumsum(~labels)])
    p = labels.sum()
    precision = np.maximum(tp, 1e-10) / np.maximum(tp + fp, 1e-10)
    recall = tp / p
    before = negatives_before_positives(labels)
    assert average_precision(before, p) == pytest.approx(np.trapezoid(precision, recall), abs=1e-12)
    assert roc_auc(before, p, (~labels).sum()) == pytest.approx(np.trapezoid(tp / p, fp / (~labels).sum()))


# ---------------------------------------------------------------------------- a tiny dataset
def write_tasks(task_dir, splits, pos, intra, inter, queries, distractors):
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / "splits.json").write_text(json.dumps(splits))
    header = "s1,t1,idx1,s2,t2,idx2\n"
    for kind, rows in (("pos", pos), ("neg_intra", intra), ("neg_inter", inter)):
        (task_dir / f"verif_{kind}_split-x.csv").write_text(
            header + "".join(",".join(map(str, r)) + "\n" for r in rows))
    for kind, rows in (("queries", queries), ("distractors", distractors)):
        (task_dir / f"retr_{kind}_split-x.csv").write_text(
            "s,idx\n" + "".join(f"{s},{i}\n" for s, i in rows))


def constant_set(names_lengths, dim=4):
    return hp.HPatchesDescriptors({s: np.ones((16, n, dim), np.float32) for s, n in names_lengths.items()})


def test_constant_descriptor_scores_as_the_official_tie_rules_say(tmp_path):
    seqs = {"i_a": 6, "v_b": 6}
    desc = constant_set(seqs)
    assert "all the ref descriptors are identical" in desc.degeneracy()
    pairs = [("i_a", 1, k % 6, "i_a", 2, k % 6) for k in range(10)]
    write_tasks(tmp_path, {"x": {"name": "x", "test": list(seqs)}}, pairs, pairs, pairs,
                [("i_a", 0), ("v_b", 1)], [("v_b", k) for k in range(2, 6)] + [("i_a", 5)])
    split = tasks.load_splits(tmp_path)["x"]
    ver = hp.verification(desc, task_files(tmp_path, split), PY).set_index(["level", "negatives", "protocol"])["value"]
    # python lists negatives first: 10 negatives, then the first int(0.2 * 10) = 2 positives
    expected_ap = 0.5 * (0.5 * (1 / 11 + 1e-11) + 0.5 * (2 / 12 + 1 / 11))
    assert ver[("easy", "inter", "imbalanced")] == pytest.approx(expected_ap)
    assert ver[("tough", "intra", "balanced")] == 0.0
    ver_ml = hp.verification(desc, task_files(tmp_path, split), ML)
    assert np.allclose(ver_ml["value"], 1.0)  # MATLAB lists positives first
    ret = hp.retrieval(desc, task_files(tmp_path, split), PY)
    assert np.allclose(ret["ap"], 1.0)  # positives first: the constant descriptor's retrieval mAP 1
    assert sorted(ret["pool"].unique()) == list(hp.POOL_SIZES)
    match = hp.matching(desc, list(seqs), PY)
    # every ref patch matches target 0 (lowest index), so only patch 0 is right, ranked first
    assert np.allclose(match["sr"], 1 / 6) and np.allclose(match["ap"], (1 / 6) * (1 + 1) / 2)
    assert np.allclose(hp.matching(desc, list(seqs), ML)["ap"], 1 / 6)


def test_verification_hand_case(tmp_path):
    # one sequence, 1-D descriptors: ref patch i at i, every target image puts patch i at i + 0.25
    n = 10
    base = np.arange(n, dtype=np.float32)
    stack = np.stack([base + (0 if k == 0 else 0.25) for k in range(16)])[:, :, None]
    desc = hp.HPatchesDescriptors({"i_a": np.concatenate([stack, np.zeros_like(stack)], axis=2)})
    pos = [("i_a", 0, i, "i_a", 1, i) for i in range(n)]            # distance 0.25 each
    intra = [("i_a", 1, i, "i_a", 2, (i + 1) % n) for i in range(n)]  # distance 1 (9 times) or 9
    inter = [("i_a", 0, i, "i_a", 3, i) for i in range(5)] + intra[:5]  # 5 at 0.25 (ties), 5 at 1
    write_tasks(tmp_path, {"x": {"name": "x", "test": ["i_a"]}}, pos, intra, inter, [], [])
    split = tasks.load_splits(tmp_path)["x"]
    ver = hp.verification(desc, task_files(tmp_path, split), PY).set_index(["level", "negatives", "protocol"])["value"]
    assert ver[("hard", "intra", "balanced")] == pytest.approx(1.0)
    assert ver[("hard", "intra", "imbalanced")] == pytest.approx(1.0)
    # inter: 5 negatives tie with every positive and rank before them (python): each positive sees
    # 5 of the 10 negatives after it -> ROC AUC 0.5; the 2 kept positives come at ranks 6 and 7
    assert ver[("easy", "inter", "balanced")] == pytest.approx(0.5)
    ap = 0.5 * (0.5 * (1 / 6 + 1e-10 / 5) + 0.5 * (2 / 7 + 1 / 6))
    assert ver[("easy", "inter", "imbalanced")] == pytest.approx(ap)
    # MATLAB: positives first (ties favour them), TREC AP over floor(0.2 * 10) = 2 positives
    ver_ml = hp.verification(desc, task_files(tmp_path, split), ML).set_index(["level", "negatives", "protocol"])["value"]
    assert ver_ml[("easy", "inter", "imbalanced")] == pytest.approx(1.0)
    assert ver_ml[("easy", "inter", "balanced")] == pytest.approx(1.0)


def retrieval_set():
    """Query i_q/0 at the origin; its 5 positives at distances 1..5 in every level; distractors in
    v_d (far, then near) and in i_q itself (distance 0, must not count)."""
    dim = 2
    q = np.zeros((16, 3, dim), np.float32)
    for k in range(1, 16):
        q[k, 0, 0] = (k - 1) % 5 + 1
    q[:, 1:, 0] = 0.0  # i_q/1, i_q/2: same-sequence distractors at distance 0
    d = np.zeros((16, 600, dim), np.float32)
    d[:, :95, 0] = 10.0  # distractors 0..94 far
    d[:, 95:, 0] = 0.5   # distractors 95..599 nearer than every positive
    return hp.HPatchesDescriptors({"i_q": q, "v_d": d})


def test_retrieval_pools_follow_file_order_and_drop_same_sequence(tmp_path):
    desc = retrieval_set()
    distractors = [("i_q", 1), ("i_q", 2)] + [("v_d", k) for k in range(600)]
    write_tasks(tmp_path, {"x": {"name": "x", "test": ["i_q", "v_d"]}}, [], [], [], [("i_q", 0)],
                distractors)
    split = tasks.load_splits(tmp_path)["x"]
    ret = hp.retrieval(desc, task_files(tmp_path, split), PY)
    ap = ret.query("level == 'tough'").set_index("pool")["ap"]
    # pool 100: the 95 other-sequence distractors kept are all far -> perfect
    assert ap[100] == pytest.approx(1.0)
    # pool 500: 400 near distractors precede the 5 positives (ranks 401..405)
    expected = average_precision(np.full(5, 400), 5, "trapezoid")
    assert ap[500] == pytest.approx(expected)
    assert ap[20000] == pytest.approx(average_precision(np.full(5, 505), 5, "trapezoid"))
    # MATLAB: all distractors, same-sequence ones ignored, TREC AP
    ml = hp.retrieval(desc, task_files(tmp_path, split), ML)
    assert list(ml["pool"]) == [602] * 3
    assert ml["ap"].iloc[0] == pytest.approx(np.mean([(i / (i + 505)) for i in range(1, 6)]))


def test_matching_hand_case():
    # ref patches at 0, 1, 2, 3 (1-D); in every target image patch 0 moved to 1.4
    ref = np.array([0.0, 1.0, 2.0, 3.0], np.float32)
    tgt = np.array([1.4, 1.1, 2.05, 3.0], np.float32)
    stack = np.stack([ref] + [tgt] * 15)[:, :, None]
    desc = hp.HPatchesDescriptors({"v_m": np.concatenate([stack, np.zeros_like(stack)], axis=2)})
    m = hp.matching(desc, ["v_m"], PY)
    # NN of ref 0 -> target 1 (1.1, wrong, d 1.1); ref 1 -> target 1 (d 0.1, right);
    # ref 2 -> target 2 (d 0.05, right); ref 3 -> target 3 (d 0, right)
    # ranked by distance: 3 (right), 2 (right), 1 (right), 0 (wrong); P = 4
    assert m["sr"].iloc[0] == pytest.approx(0.75)
    assert m["ap"].iloc[0] == pytest.approx(0.75)
    assert set(m["category"]) == {"viewpoint"} and len(m) == 15


def test_summary_aggregates():
    ver = []
    for i, level in enumerate(hp.LEVELS):
        for neg in hp.NEGATIVES:
            ver += [(level, neg, "balanced", 0.9), (level, neg, "imbalanced", 0.1 * (i + 1))]
    match = [("i_a", "illumination", lv, k, 0.2, 0.5) for lv in hp.LEVELS for k in range(1, 6)]
    match += [(s, "viewpoint", lv, k, v, 0.5) for s, v in (("v_a", 0.4), ("v_b", 0.8))
              for lv in hp.LEVELS for k in range(1, 6)]
    ret = [(q, "i_a", q, lv, p, 0.5 if p == 100 else 0.0) for q in range(2) for lv in hp.LEVELS
           for p in hp.POOL_SIZES]
    import pandas as pd
    summary = hp.summarise({
        "verification": pd.DataFrame(ver, columns=["level", "negatives", "protocol", "value"]),
        "matching": pd.DataFrame(match, columns=["sequence", "category", "level", "image", "ap", "sr"]),
        "retrieval": pd.DataFrame(ret, columns=["query", "sequence", "idx", "level", "pool", "ap"]),
    })
    assert summary["verification"] == pytest.approx(0.2)
    assert summary["levels"]["verification"]["tough"] == pytest.approx(0.3)
    assert summary["matching"] == pytest.approx((0.2 + 0.6) / 2)  # category-weighted
    assert summary["retrieval"] == pytest.approx(0.5 / 7)


def test_bad_descriptors_are_clear_errors(tmp_path):
    with pytest.raises(DescbenchError, match="NaN or Inf"):
        hp.HPatchesDescriptors({"i_a": np.full((16, 3, 2), np.nan, np.float32)})
    with pytest.raises(DescbenchError, match="different dimensions"):
        hp.HPatchesDescriptors({"i_a": np.ones((16, 3, 2)), "i_b": np.ones((16, 3, 4))})
    with pytest.raises(DescbenchError, match=r"\(16, N, dim\)"):
        hp.HPatchesDescriptors({"i_a": np.ones((15, 3, 2))})
    desc = constant_set({"i_a": 3})
    write_tasks(tmp_path, {"x": {"name": "x", "test": ["i_a"]}}, [("i_a", 0, 5, "i_a", 1, 5)],
                [("i_b", 0, 0, "i_a", 1, 1)], [("i_a", 0, 0, "i_a", 1, 1)], [("i_a", 0)], [("i_a", 1)])
    split = tasks.load_splits(tmp_path)["x"]
    with pytest.raises(DescbenchError, match="out of range"):
        hp.verification(desc, task_files(tmp_path, split), PY)
    with pytest.raises(DescbenchError, match="no descriptors for sequences v_z"):
        hp.matching(desc, ["v_z"], PY)
    with pytest.raises(DescbenchError, match="unknown convention"):
        hp.convention_for("octave")


def test_decisions_below_float32_resolution_use_reference_distances():
    from descbench.evaluate import distances as dist

    a = np.array([[1.0, 0.0, 0.5]], np.float32)
    # squared distances 9.0e-8 and 8.41e-8: indistinguishable next to |a|^2 = 1.25 in float32
    b = np.array([[1.0, 3e-4, 0.5], [1.0 + 2.9e-4, 0.0, 0.5]], np.float32)
    p = dist.ProxyIndex(b, "L2").proxies(a)
    assert abs(float(p.values[0, 0]) - float(p.values[0, 1])) <= 2 * p.tol[0]
    reference = dist.exact_rows(np.repeat(a, 2, axis=0), b, "L2")
    for device in (None, "cpu"):  # int8 products, float32 products
        nn, d = dist.nearest(a, b, "L2", device=device)
        assert nn[0] == int(np.argmin(reference)) and d[0] == reference.min()
    # counting negatives closer than a positive placed between the two
    pos_ref = np.array([[reference.min() ** 2 * 1.0000001, reference.max() ** 2 * 1.0000001]])
    closer = dist.Closer(a, b, "L2")
    counts = closer.count(np.array([0]), np.arange(2), pos_ref, np.sqrt(pos_ref), np.array([2]),
                          np.empty((1, closer.COLUMNS), np.float32))
    assert counts[0, :, 0].tolist() == [1, 2]


# ---------------------------------------------------------------------------- degenerate descriptors
def _stack_set(ref_rows, n_seq=2):
    """Sequences whose 16 image types all hold ``ref_rows`` split evenly across ``n_seq`` sequences."""
    parts = np.array_split(np.asarray(ref_rows, np.float32), n_seq)
    return hp.HPatchesDescriptors({f"i_{k}": np.repeat(p[None], 16, axis=0) for k, p in enumerate(parts)})


def test_degeneracy_flags_near_degenerate_descriptors():
    rng = np.random.default_rng(0)
    n = 3000
    # constant except one patch per batch of 512: the case the all-equal test used to miss
    near = np.ones((n, 8), np.float32)
    near[::512] = rng.normal(size=(len(near[::512]), 8))
    assert "are one and the same vector" in _stack_set(near).degeneracy()
    # quantised to a few values
    assert "one and the same vector" in _stack_set(rng.integers(0, 2, (n, 2))).degeneracy()
    # every vector three times
    triples = np.repeat(rng.normal(size=(n // 3, 8)), 3, axis=0)
    assert "only 33.3 % of the ref descriptors" in _stack_set(triples).degeneracy()
    # collapsed: distinct, but all within float32 noise of one vector
    collapsed = 1 + rng.normal(scale=1e-6, size=(n, 8))
    assert "collapsed" in _stack_set(collapsed).degeneracy()
    # -0.0 and 0.0 are the same descriptor
    signed = np.zeros((n, 4), np.float32)
    signed[::2] = -0.0
    assert "all the ref descriptors are identical" in _stack_set(signed).degeneracy()


def test_degeneracy_leaves_ordinary_descriptors_alone():
    rng = np.random.default_rng(1)
    normal = rng.normal(size=(5000, 16))
    assert _stack_set(normal / np.linalg.norm(normal, axis=1, keepdims=True)).degeneracy() is None
    assert _stack_set(1000 + rng.normal(size=(5000, 16))).degeneracy() is None  # a large offset is fine
    some_zero = normal.copy()
    some_zero[:200] = 0  # a few flat patches (SIFT gives them all zeros)
    assert _stack_set(some_zero).degeneracy() is None
    assert _stack_set(normal[:1]).degeneracy() is None


def test_evaluate_warns_once_and_keeps_the_official_numbers(tmp_path, caplog):
    rng = np.random.default_rng(2)
    seqs = {"i_a": 40, "v_b": 40}
    per_seq = {s: np.ones((16, n, 4), np.float32) for s, n in seqs.items()}
    per_seq["i_a"][:, 0] = rng.normal(size=(16, 4))  # one distinct patch
    desc = hp.HPatchesDescriptors(per_seq)
    pairs = [("i_a", 0, k, "v_b", 1, k) for k in range(20)]
    write_tasks(tmp_path, {"x": {"name": "x", "test": list(seqs)}}, pairs, pairs, pairs,
                [("i_a", k) for k in range(5)], [("v_b", k) for k in range(40)])
    with caplog.at_level("WARNING", logger="descbench.evaluate.hpatches"):
        results, summary = hp.evaluate(desc, tmp_path, "x", PY)
    warnings = [r for r in caplog.records if "degenerate" in r.getMessage()]
    assert len(warnings) == 1 and "98.8 % of the ref descriptors" in warnings[0].getMessage()
    assert summary["retrieval"] > 0.98  # near-perfect from ties alone: what the warning is about
    split = tasks.load_splits(tmp_path)["x"]
    expected = hp.summarise({"verification": hp.verification(desc, task_files(tmp_path, split), PY),
                             "matching": hp.matching(desc, list(seqs), PY),
                             "retrieval": hp.retrieval(desc, task_files(tmp_path, split), PY)})
    assert {k: summary[k] for k in expected} == expected


# ---------------------------------------------------------------------------- result sets
def _tables():
    import pandas as pd

    return {"matching": pd.DataFrame({"ap": [0.5]}), "retrieval": pd.DataFrame({"ap": [0.25]})}


def test_write_results_replaces_the_set_as_a_whole(tmp_path, monkeypatch):
    import errno

    import pandas as pd

    out = tmp_path / "scores"
    hp.write_results(out, {**_tables(), "verification": pd.DataFrame({"v": [1]})}, {"run": 1})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"matching.csv", "retrieval.csv", "verification.csv", "summary.json"}

    def failing_disk(path, obj):
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(hp, "write_json", failing_disk)  # fails after the csvs are written
    with pytest.raises(OSError, match="Input/output error"):
        hp.write_results(out, _tables(), {"run": 2})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old set, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]  # no staging folder left
    with pytest.raises(OSError):
        hp.write_results(tmp_path / "fresh", _tables(), {"run": 2})
    assert not (tmp_path / "fresh").exists()  # no partial set that looks like a result
    monkeypatch.undo()
    hp.write_results(out, _tables(), {"run": 3})  # a new set drops the stale verification.csv
    assert sorted(p.name for p in out.iterdir()) == ["matching.csv", "retrieval.csv", "summary.json"]
    assert json.loads((out / "summary.json").read_text()) == {"run": 3}


def test_write_results_never_deletes_other_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(DescbenchError, match=r"mine holds files that are not HPatches results \(notes.txt\)"):
        hp.write_results(out, _tables(), {})
    assert (out / "notes.txt").read_text() == "keep me"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DescbenchError, match="exists and is not a folder"):
        hp.write_results(tmp_path / "afile", _tables(), {})
    # an earlier set, with the staging leftover of a killed per-file write, is replaced
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "summary.json").write_text("{}")
    (earlier / ".matching.csv.host-123.abc.tmp").write_text("half")
    hp.write_results(earlier, _tables(), {"new": 1})
    assert sorted(p.name for p in earlier.iterdir()) == ["matching.csv", "retrieval.csv", "summary.json"]
