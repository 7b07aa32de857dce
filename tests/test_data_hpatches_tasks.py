"""Task-file regeneration follows the official generator rules; the readers and splits."""

import json

import numpy as np
import pytest

from descbench.errors import DescbenchError
from descbench.data import hpatches_tasks
from descbench.evaluate import tasks

# Tiny case: three sequences of 5, 7 and 4 checkerboard ref patches, four of them flat (std 0 <= 10).
LENGTHS = {"i_a": 5, "v_b": 7, "i_c": 4}
FLAT = {("i_a", 1), ("v_b", 3), ("v_b", 4)}
SPLITS = {"t": {"name": "t", "test": ["i_a", "v_b", "i_c"]}}

# What hpatches-benchmark's gen_verif(N_pos=N_neg=6) and gen_retrieval(N_queries=4, N_distractors=6)
# (python/utils/tasks.py at e0c993c) wrote for this case, run outside the project.
OFFICIAL = {
    "verif_pos_split-t.csv": "s1,t1,idx1,s2,t2,idx2\ni_c,2,3,i_c,3,3\ni_a,1,3,i_a,3,3\ni_c,0,0,i_c,4,0\n"
                             "i_c,0,3,i_c,1,3\ni_a,1,0,i_a,3,0\ni_a,3,2,i_a,1,2\n",
    "verif_neg_intra_split-t.csv": "s1,t1,idx1,s2,t2,idx2\ni_c,2,3,i_c,3,0\ni_a,1,3,i_a,3,1\n"
                                   "i_c,0,0,i_c,4,1\ni_c,0,3,i_c,1,2\ni_a,1,0,i_a,3,2\ni_a,3,2,i_a,1,1\n",
    "verif_neg_inter_split-t.csv": "s1,t1,idx1,s2,t2,idx2\ni_c,2,3,i_a,3,4\ni_a,1,3,v_b,3,1\n"
                                   "i_c,0,0,v_b,4,3\ni_c,0,3,v_b,1,3\ni_a,1,0,i_a,3,3\ni_a,3,2,v_b,1,6\n",
    "retr_queries_split-t.csv": "s,idx\ni_c,1\ni_a,3\ni_c,0\nv_b,0\n",
    "retr_distractors_split-t.csv": "s,idx\ni_c,3\ni_c,2\ni_a,4\ni_a,0\nv_b,6\ni_a,2\n",
}


def tiny_refs():
    checker = (np.indices((65, 65)).sum(0) % 2).astype(np.uint8)
    return {s: np.stack([checker * (0 if (s, i) in FLAT else 100) for i in range(n)])
            for s, n in LENGTHS.items()}


def test_regeneration_reproduces_the_official_generator(tmp_path):
    hpatches_tasks.write_task_files(tmp_path, tiny_refs(), SPLITS, n_pairs=6, n_queries=4, n_distractors=6)
    for name, text in OFFICIAL.items():
        assert (tmp_path / name).read_text() == text, name


def test_generated_files_follow_the_rules(tmp_path):
    refs = tiny_refs()
    hpatches_tasks.write_task_files(tmp_path, refs, SPLITS, n_pairs=300, n_queries=8, n_distractors=12)
    pos = tasks.read_pairs(tmp_path, "pos", "t")
    intra = tasks.read_pairs(tmp_path, "neg_intra", "t")
    inter = tasks.read_pairs(tmp_path, "neg_inter", "t")
    assert len(pos) == len(intra) == len(inter) == 300
    # images 0..4 only, two different ones per pair; all three files share the first patch
    for table in (pos, intra, inter):
        assert table.t1.max() <= 4 and table.t2.max() <= 4 and np.all(table.t1 != table.t2)
        assert np.array_equal(np.asarray(table.names)[table.seq1], np.asarray(pos.names)[pos.seq1])
        assert np.array_equal(table.idx1, pos.idx1)
    assert np.array_equal(pos.idx1, pos.idx2)
    assert np.all(intra.idx1 != intra.idx2)
    queries = tasks.read_queries(tmp_path, "t")
    distractors = tasks.read_distractors(tmp_path, "t")
    q = {(queries.names[s], i) for s, i in zip(queries.seq, queries.idx)}
    d = [(distractors.names[s], i) for s, i in zip(distractors.seq, distractors.idx)]
    assert len(q) == len(queries) and len(set(d)) == len(d)  # no duplicates
    assert not q & set(d)  # queries are not distractors
    assert not (q | set(d)) & FLAT  # flat patches (std <= 10) are never used
    # the same inputs give the same bytes
    again = tmp_path / "again"
    hpatches_tasks.write_task_files(again, refs, SPLITS, n_pairs=300, n_queries=8, n_distractors=12)
    for path in tmp_path.glob("*.csv"):
        assert (again / path.name).read_bytes() == path.read_bytes()


def test_load_splits_finds_both_layouts_and_names_splits(tmp_path):
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "splits.json").write_text(json.dumps({"full": {"test": ["i_a"]}}))
    assert tasks.load_splits(tmp_path) == {"full": {"test": ["i_a"], "name": "full"}}
    (tmp_path / "splits.json").write_text(json.dumps({"a": {"name": "a", "test": ["v_b"]}}))
    assert list(tasks.load_splits(tmp_path)) == ["a"]
    with pytest.raises(DescbenchError, match="unknown split 'x'"):
        tasks.get_split(tasks.load_splits(tmp_path), "x")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(DescbenchError, match="no splits.json"):
        tasks.load_splits(tmp_path)
    with pytest.raises(DescbenchError, match="without patches"):
        hpatches_tasks.write_task_files(tmp_path, {"i_a": tiny_refs()["i_a"]}, SPLITS, 5, 2, 2)
    with pytest.raises(DescbenchError, match="is missing"):
        tasks.read_pairs(tmp_path, "pos", "t")
    (tmp_path / "retr_queries_split-t.csv").write_text("seq,idx\ni_a,1\n")
    with pytest.raises(DescbenchError, match="columns"):
        tasks.read_queries(tmp_path, "t")
