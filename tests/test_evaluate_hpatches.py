"""HPatches metrics and tie rules against hand-computed cases (PROTOCOLS.md §1.6-1.9)."""

import json

import numpy as np
import pytest

from descbench.errors import DescbenchError
from descbench.evaluate import hpatches as hp
from descbench.evaluate import tasks
from descbench.evaluate.ranking import average_precision, negatives_before_positives, roc_auc

PY = hp.convention_for("python")
ML = hp.convention_for("matlab")


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


def test_constant_descriptor_scores_as_the_official_tie_rules_say(tmp_path, caplog):
    seqs = {"i_a": 6, "v_b": 6}
    desc = constant_set(seqs)
    assert "degenerate" in caplog.text
    pairs = [("i_a", 1, k % 6, "i_a", 2, k % 6) for k in range(10)]
    write_tasks(tmp_path, {"x": {"name": "x", "test": list(seqs)}}, pairs, pairs, pairs,
                [("i_a", 0), ("v_b", 1)], [("v_b", k) for k in range(2, 6)] + [("i_a", 5)])
    split = tasks.load_splits(tmp_path)["x"]
    ver = hp.verification(desc, tmp_path, split, PY).set_index(["level", "negatives", "protocol"])["value"]
    # python lists negatives first: 10 negatives, then the first int(0.2 * 10) = 2 positives
    expected_ap = 0.5 * (0.5 * (1 / 11 + 1e-11) + 0.5 * (2 / 12 + 1 / 11))
    assert ver[("easy", "inter", "imbalanced")] == pytest.approx(expected_ap)
    assert ver[("tough", "intra", "balanced")] == 0.0
    ver_ml = hp.verification(desc, tmp_path, split, ML)
    assert np.allclose(ver_ml["value"], 1.0)  # MATLAB lists positives first
    ret = hp.retrieval(desc, tmp_path, split, PY)
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
    ver = hp.verification(desc, tmp_path, split, PY).set_index(["level", "negatives", "protocol"])["value"]
    assert ver[("hard", "intra", "balanced")] == pytest.approx(1.0)
    assert ver[("hard", "intra", "imbalanced")] == pytest.approx(1.0)
    # inter: 5 negatives tie with every positive and rank before them (python): each positive sees
    # 5 of the 10 negatives after it -> ROC AUC 0.5; the 2 kept positives come at ranks 6 and 7
    assert ver[("easy", "inter", "balanced")] == pytest.approx(0.5)
    ap = 0.5 * (0.5 * (1 / 6 + 1e-10 / 5) + 0.5 * (2 / 7 + 1 / 6))
    assert ver[("easy", "inter", "imbalanced")] == pytest.approx(ap)
    # MATLAB: positives first (ties favour them), TREC AP over floor(0.2 * 10) = 2 positives
    ver_ml = hp.verification(desc, tmp_path, split, ML).set_index(["level", "negatives", "protocol"])["value"]
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
    ret = hp.retrieval(desc, tmp_path, split, PY)
    ap = ret.query("level == 'tough'").set_index("pool")["ap"]
    # pool 100: the 95 other-sequence distractors kept are all far -> perfect
    assert ap[100] == pytest.approx(1.0)
    # pool 500: 400 near distractors precede the 5 positives (ranks 401..405)
    expected = average_precision(np.full(5, 400), 5, "trapezoid")
    assert ap[500] == pytest.approx(expected)
    assert ap[20000] == pytest.approx(average_precision(np.full(5, 505), 5, "trapezoid"))
    # MATLAB: all distractors, same-sequence ones ignored, TREC AP
    ml = hp.retrieval(desc, tmp_path, split, ML)
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
        hp.verification(desc, tmp_path, split, PY)
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
    nn, d = dist.nearest_neighbours(a, b, "L2")
    assert nn[0] == int(np.argmin(reference)) and d[0] == reference.min()
    # counting negatives closer than a positive placed between the two
    pos_ref = np.array([[reference.min() ** 2 * 1.0000001, reference.max() ** 2 * 1.0000001]])
    counts = dist.count_closer(p, a, b, "L2", pos_ref, np.sqrt(pos_ref), np.array([2]))
    assert counts[0, :, 0].tolist() == [1, 2]
