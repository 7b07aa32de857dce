"""The fast HPatches paths (blocked float32/float64 proxies, threads, torch device) equal a plain
float64 reference cell by cell, on data full of exact ties and near-ties."""

import json

import numpy as np
import pytest
from scipy.spatial.distance import cdist, cityblock, euclidean

from descbench.errors import DescbenchError
from descbench.evaluate import distances as dist
from descbench.evaluate import hpatches as hp
from descbench.data import hpatches_tasks
from descbench.evaluate import tasks
from descbench.evaluate.ranking import average_precision, negatives_before_positives

CDIST = {"L2": "euclidean", "L1": "cityblock", "L2sq": "sqeuclidean"}


def task_files(task_dir, split):
    return tasks.read_task_files(task_dir, split["name"])


def tricky_set(seed=0, n_seq=4, dim=8):
    """Coarse values (exact ties), duplicated patches, equal descriptors across sequences and
    perturbations of 2^-20 (distances equal in float32 proxies, different in float64)."""
    rng = np.random.default_rng(seed)
    per = {}
    shared = (rng.integers(-2, 3, size=(3, dim)) / 4).astype(np.float32)
    for s in range(n_seq):
        n = 30 + 7 * s
        ref = (rng.integers(-2, 3, size=(n, dim)) / 4).astype(np.float32)
        ref[:3] = shared  # the same descriptors in every sequence
        ref[5] = ref[4]  # duplicated patch
        stack = np.empty((16, n, dim), np.float32)
        stack[0] = ref
        for t in range(1, 16):
            x = ref.copy()
            noisy = rng.random(n) < 0.5
            x[noisy] += (rng.integers(-1, 2, size=(noisy.sum(), dim)) / 4).astype(np.float32)
            tiny = rng.random(n) < 0.3  # near-ties: 2^-20 apart
            x[tiny, rng.integers(dim)] += np.float32(2.0 ** -20) * rng.choice([-1, 1], tiny.sum())
            x[7] = x[8]  # two equal targets
            stack[t] = x
        per[f"{'iv'[s % 2]}_s{s}"] = stack
    return per


def write_tasks(task_dir, per, n_pairs=400, n_q=40, n_d=60):
    rng = np.random.default_rng(1)
    names = sorted(per)
    refs = {n: rng.integers(0, 256, size=(per[n].shape[1], 65, 65), dtype=np.uint8) for n in names}
    splits = {"x": {"name": "x", "test": names}}
    hpatches_tasks.write_task_files(task_dir, refs, splits, n_pairs=n_pairs, n_queries=n_q, n_distractors=n_d)
    (task_dir / "splits.json").write_text(json.dumps(splits))
    return splits["x"]


# ------------------------------------------------------------------------------- reference path
def ref_matching(per, seqs, conv):
    rows = []
    for s in seqs:
        ref = per[s][0].astype(np.float64)
        for li, level in enumerate(hp.LEVELS):
            for k in range(1, 6):
                D = cdist(ref, per[s][hp.LEVEL_BASE[level] + k].astype(np.float64), CDIST[conv.metric])
                nn = D.argmin(axis=1)
                d = D[np.arange(len(nn)), nn]
                correct = nn == np.arange(len(nn))
                before = negatives_before_positives(correct[np.argsort(d, kind="stable")])
                rows.append(float(average_precision(before, len(nn), conv.ap_kind)))
    return np.array(rows)


def ref_retrieval(per, task_dir, split, conv):
    q = tasks.read_queries(task_dir, split["name"])
    dl = tasks.read_distractors(task_dir, split["name"])
    q_s, d_s = np.asarray(q.names)[q.seq], np.asarray(dl.names)[dl.seq]
    d_desc = np.stack([per[s][0][i] for s, i in zip(d_s, dl.idx)]).astype(np.float64)
    pools = hp.POOL_SIZES if conv.name == "python" else (len(d_s) + 5,)
    out = []
    for s, i in zip(q_s, q.idx):
        qv = per[s][0][i].astype(np.float64)[None]
        negd = cdist(qv, d_desc[d_s != s], CDIST[conv.metric])[0]
        for level in hp.LEVELS:
            pos = np.stack([per[s][hp.LEVEL_BASE[level] + k][i] for k in range(1, 6)]).astype(np.float64)
            posd = cdist(qv, pos, CDIST[conv.metric])[0]
            for pool in pools:
                lst = np.concatenate([posd, negd[:pool - 5]])
                lab = np.arange(len(lst)) < 5
                before = negatives_before_positives(lab[np.argsort(lst, kind="stable")])
                out.append(float(average_precision(before, 5, conv.ap_kind)))
    return np.array(out)


def official_pair_distances(a, b, metric):
    """Verification distances as the official code computes them: scipy's per-pair euclidean /
    cityblock of the float32 descriptors; MATLAB's squared L2 of the float32 difference in float64."""
    if metric == "L2":
        return np.array([euclidean(u, v) for u, v in zip(a, b)])
    if metric == "L1":
        return np.array([cityblock(u, v) for u, v in zip(a, b)], dtype=np.float64)
    diff = (a - b).astype(np.float64)
    return (diff * diff).sum(axis=1)


def ref_verification(per, task_dir, split, conv):
    def d(kind, level):
        t = tasks.read_pairs(task_dir, kind, split["name"])
        names = np.asarray(t.names)
        img = lambda tt: np.where(tt == 0, 0, hp.LEVEL_BASE[level] + tt)
        a = np.stack([per[s][m][i] for s, m, i in zip(names[t.seq1], img(t.t1), t.idx1)])
        b = np.stack([per[s][m][i] for s, m, i in zip(names[t.seq2], img(t.t2), t.idx2)])
        return official_pair_distances(a, b, conv.metric)
    vals = []
    for level in hp.LEVELS:
        pos = d("pos", level)
        for neg in hp.NEGATIVES:
            dn = d(f"neg_{neg}", level)
            lst = np.concatenate([pos, dn] if conv.positives_first else [dn, pos])
            lab = np.arange(len(lst)) < len(pos) if conv.positives_first else np.arange(len(lst)) >= len(dn)
            before = negatives_before_positives(lab[np.argsort(lst, kind="stable")])
            vals.append(float((len(dn) - before).sum() / len(pos) / len(dn)))
            keep = int(np.floor(len(dn) * 0.2)) if conv.positives_first else int(len(pos) * 0.2)
            lst = np.concatenate([pos[:keep], dn] if conv.positives_first else [dn, pos[:keep]])
            lab = np.arange(len(lst)) < keep if conv.positives_first else np.arange(len(lst)) >= len(dn)
            before = negatives_before_positives(lab[np.argsort(lst, kind="stable")])
            vals.append(float(average_precision(before, keep, conv.ap_kind)))
    return np.array(vals)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    task_dir = tmp_path_factory.mktemp("tasks")
    per = tricky_set()
    return per, task_dir, write_tasks(task_dir, per)


CASES = [("python", "L2"), ("python", "L1"), ("matlab", "L2"), ("matlab", "L1")]


@pytest.mark.parametrize("name,metric", CASES)
@pytest.mark.parametrize("engine", [dict(threads=1), dict(threads=2), dict(threads=2, device="cpu")])
def test_fast_paths_equal_the_float64_reference_cell_by_cell(data, name, metric, engine):
    per, task_dir, split = data
    conv = hp.convention_for(name, metric)
    desc = hp.HPatchesDescriptors(per)
    seqs = list(split["test"])
    m = hp.matching(desc, seqs, conv, **engine)
    np.testing.assert_allclose(m["ap"].to_numpy(), ref_matching(per, seqs, conv), rtol=0, atol=1e-12)
    r = hp.retrieval(desc, task_files(task_dir, split), conv, **engine)
    np.testing.assert_allclose(r["ap"].to_numpy(), ref_retrieval(per, task_dir, split, conv), rtol=0, atol=1e-12)
    v = hp.verification(desc, task_files(task_dir, split), conv)
    np.testing.assert_allclose(v["value"].to_numpy(), ref_verification(per, task_dir, split, conv),
                               rtol=0, atol=1e-12)


def test_near_ties_are_below_float32_resolution_and_decided_in_float64():
    # nearest vs second nearest differ by ~2^-21 in squared distance: one float32 proxy, two float64 values
    a = np.full((1, 8), 0.5, np.float32)
    b = np.tile(a, (3, 1)) + np.float32(0.25)
    b[2, 3] += np.float32(2.0 ** -20)  # row 2 slightly farther than rows 0/1, which tie exactly
    b[0, 1] -= np.float32(2.0 ** -22)   # row 0 slightly closer than row 1
    d64 = cdist(a.astype(np.float64), b.astype(np.float64))[0]
    assert len(set(d64.tolist())) == 3
    assert dist.match_block(a, b, "L2")[0] == d64.argmin() == 0
    b[0] = b[1]  # now an exact tie: the lowest index wins, as np.argmin over the reference
    assert dist.match_block(a, b, "L2")[0] == 0
    assert dist.match_block(a, b[::-1].copy(), "L2")[0] == 1


def test_descriptor_files_load_without_patch_stacks_and_check_n(tmp_path):
    per = tricky_set(n_seq=2)
    for fmt in ("npy", "csv"):
        root = tmp_path / fmt
        for name, stack in per.items():
            (root / name).mkdir(parents=True)
            for t, table in zip(hp.IMAGE_TYPES, stack):
                if fmt == "npy":
                    np.save(root / name / f"{t}.npy", table)
                else:
                    np.savetxt(root / name / f"{t}.csv", table, delimiter=";" if name.startswith("v") else ",",
                               fmt="%.9g")
        desc = hp.HPatchesDescriptors.from_dir(root, {n: s.shape[1] for n, s in per.items()})
        for name, stack in per.items():
            np.testing.assert_array_equal(desc.sequence(name, 0), stack[0])
            np.testing.assert_array_equal(desc.sequence(name, 15), stack[15])
        with pytest.raises(DescbenchError, match="task files use patch index"):
            hp.HPatchesDescriptors.from_dir(root, {"i_s0": per["i_s0"].shape[1] + 1})
        with pytest.raises(DescbenchError, match="no descriptors for sequences"):
            hp.HPatchesDescriptors.from_dir(root, {"i_zz": 3})


def test_task_lengths_of_a_matching_run_come_from_the_retrieval_lists(data, tmp_path):
    """Matching reads no task file, yet the retrieval lists (where present) size the descriptor check."""
    per, task_dir, split = data
    files = tasks.read_task_files(task_dir, split["name"], ["matching"])
    assert files.pairs == {} and files.queries is not None and files.distractors is not None
    retrieval_only = tasks.read_task_files(task_dir, split["name"], ["retrieval"])
    assert hp.task_lengths(files) == hp.task_lengths(retrieval_only) != {}
    (tmp_path / "splits.json").write_text((task_dir / "splits.json").read_text())  # no task files at all
    bare = tasks.read_task_files(tmp_path, split["name"], ["matching"])
    assert bare.queries is None and bare.distractors is None and hp.task_lengths(bare) == {}
    with pytest.raises(DescbenchError, match="task file .* is missing"):
        tasks.read_task_files(tmp_path, split["name"], ["retrieval"])


# ------------------------------------------------------------------------------- normalised descriptors
def normalised_tricky_set(seed=2, n_seq=3, dim=16):
    """Unit-norm descriptors (int8 products without digit columns) with the same traps: descriptors
    shared by all sequences, duplicated patches, equal targets, and targets 2^-22 apart (one int8 and
    one float32 proxy, two float64 distances)."""
    rng = np.random.default_rng(seed)
    unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    shared = unit(rng.normal(size=(3, dim)))
    per = {}
    for s in range(n_seq):
        n = 40 + 9 * s
        ref = unit(rng.normal(size=(n, dim)))
        ref[:3] = shared
        ref[5] = ref[4]
        stack = np.empty((16, n, dim), np.float32)
        stack[0] = ref
        for t in range(1, 16):
            x = unit(ref + (0.05 * t) * rng.normal(size=(n, dim)))
            x[10] = x[11]  # equal targets
            x[12] = x[13]
            x[13, rng.integers(dim)] += np.float32(2.0 ** -22)  # a near-tie with x[12]
            x[20:23] = ref[20]  # three targets at distance 0 of one ref patch
            stack[t] = x
        per[f"{'vi'[s % 2]}_n{s}"] = stack
    return per


@pytest.fixture(scope="module")
def normalised(tmp_path_factory):
    task_dir = tmp_path_factory.mktemp("tasks_unit")
    per = normalised_tricky_set()
    return per, task_dir, write_tasks(task_dir, per, n_q=30, n_d=50)


@pytest.mark.parametrize("threads", [1, 2])
def test_normalised_descriptors_equal_the_float64_reference_cell_by_cell(normalised, threads):
    per, task_dir, split = normalised
    a = dist.Int8Codes(per["i_n1"][0])
    assert dist.Int8Products(a, dist.Int8Codes(per["i_n1"][3])).a_codes.shape[1] == a.dim  # no digits
    desc = hp.HPatchesDescriptors(per)
    seqs = list(split["test"])
    for name in ("python", "matlab"):
        conv = hp.convention_for(name)
        m = hp.matching(desc, seqs, conv, threads=threads)
        np.testing.assert_allclose(m["ap"].to_numpy(), ref_matching(per, seqs, conv), rtol=0, atol=1e-12)
        r = hp.retrieval(desc, task_files(task_dir, split), conv, threads=threads)
        np.testing.assert_allclose(r["ap"].to_numpy(), ref_retrieval(per, task_dir, split, conv),
                                   rtol=0, atol=1e-12)
        v = hp.verification(desc, task_files(task_dir, split), conv, threads=threads)
        np.testing.assert_allclose(v["value"].to_numpy(), ref_verification(per, task_dir, split, conv),
                                   rtol=0, atol=1e-12)


def test_int8_nearest_decides_ties_and_near_ties_as_the_reference():
    rng = np.random.default_rng(5)
    for scale in (1.0, 1e-3, 1e3):  # the same decisions at any scale of the descriptors
        B = (rng.integers(-3, 4, size=(300, 8)) / 3).astype(np.float32) * np.float32(scale)
        B[100:110] = B[5]  # exact ties: lowest index wins
        B[200] = B[7]
        B[200, 2] += B[7, 2] * np.float32(2.0 ** -22) + np.float32(scale * 2.0 ** -22)  # near-tie
        A = np.concatenate([B[:60], B[:60] + np.float32(scale * 2.0 ** -21)])
        assert dist.Int8Products(dist.Int8Codes(A), dist.Int8Codes(B)).a_codes.shape[1] > 8  # digits
        D = cdist(A.astype(np.float64), B.astype(np.float64))
        nn, d = dist.nearest(A, B, "L2")
        np.testing.assert_array_equal(nn, D.argmin(axis=1))
        np.testing.assert_array_equal(d, D[np.arange(len(A)), nn])


def test_int8_products_that_could_overflow_fall_back_to_float32():
    rng = np.random.default_rng(6)
    A = (1e-3 * rng.normal(size=(50, 8))).astype(np.float32)
    B = (1e3 * rng.normal(size=(70, 8))).astype(np.float32)  # |b|^2 / (sA sB) far beyond int32
    assert not dist.Int8Products(dist.Int8Codes(A), dist.Int8Codes(B)).usable
    nn, _ = dist.nearest(A, B, "L2")
    np.testing.assert_array_equal(nn, cdist(A.astype(np.float64), B.astype(np.float64)).argmin(axis=1))


def test_closer_counts_equal_brute_force_with_ties(monkeypatch):
    monkeypatch.setattr(dist.Closer, "COLUMNS", 7)  # many column blocks
    rng = np.random.default_rng(7)
    Q = (rng.integers(-2, 3, size=(20, 6)) / 2).astype(np.float32)
    B = (rng.integers(-2, 3, size=(90, 6)) / 2).astype(np.float32)
    B[::9] += np.float32(2.0 ** -22)  # near-ties
    pos = np.concatenate([B[rng.integers(0, 90, (20, 3))],
                          Q[:, None] + (rng.integers(-1, 2, size=(20, 2, 6)) / 2).astype(np.float32)], axis=1)
    pos_ref = np.einsum("ijk,ijk->ij", *(2 * [Q[:, None].astype(np.float64) - pos]))
    negatives = rng.permutation(90)[:80]
    limits = np.array([5, 23, 80])
    for metric in ("L2", "L2sq"):
        pos_d = np.sqrt(pos_ref) if metric == "L2" else pos_ref
        closer = dist.Closer(Q, B, metric)
        counts = closer.count(np.arange(20), negatives, pos_ref, pos_d, limits,
                              np.empty((20, closer.COLUMNS), np.float32))
        d = cdist(Q.astype(np.float64), B[negatives].astype(np.float64), CDIST[metric])
        block = np.searchsorted(limits, np.arange(80), side="right")
        expected = np.stack([[np.bincount(block[d[i] < pos_d[i, m]], minlength=3) for m in range(5)]
                             for i in range(20)])
        np.testing.assert_array_equal(counts, expected)
        assert (d[:, None, :] == pos_d[:, :, None]).any()  # exact ties were there to be decided


def test_reference_distances_are_scipy_cdist_bit_for_bit():
    """The reference distances are the official matching distances (scipy cdist of the float32
    descriptors), to the last bit, for every metric, in pairs (4 at a time and the rest) and rows."""
    rng = np.random.default_rng(8)
    A = rng.normal(size=(50, 131)).astype(np.float32)
    B = (rng.normal(size=(40, 131)) * 10.0 ** rng.uniform(-3, 3, size=(40, 131))).astype(np.float32)
    ia, ib = rng.integers(0, 50, 4003), rng.integers(0, 40, 4003)
    for metric, name in (("L2", "euclidean"), ("L2sq", "sqeuclidean"), ("L1", "cityblock")):
        full = cdist(A.astype(np.float64), B.astype(np.float64), name)
        np.testing.assert_array_equal(dist.exact_pairs(A, ia, B, ib, metric), full[ia, ib])
        np.testing.assert_array_equal(dist.exact_rows(A[:, None, :], B[None, :, :], metric), full)
