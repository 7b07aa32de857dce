"""The training loop: kill-and-resume replays bit-identically, outputs follow the contract, every
registered method learns on small generated data, and ``descbench train`` writes a loadable model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from descbench import cli, registry
from descbench.errors import DescbenchError
from descbench.models import load_model
from descbench.nets import L2NetFRN
from descbench.train import loop
from descbench.train.loop import METRIC_COLUMNS, StopTraining, train
from descbench.train.recipe import TrainRecipe
from training_cases import TWO_STAGES, ubc_like_set


@pytest.fixture(scope="module")
def ubc_like():
    return ubc_like_set()


@pytest.fixture(scope="module")
def uninterrupted(ubc_like, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    result = train(TWO_STAGES, L2NetFRN, *ubc_like, out, seed=5, device="cpu", progress=False,
                   checkpoint_every=100)
    return out, result


def test_kill_and_resume_ends_with_bit_identical_weights(ubc_like, uninterrupted, tmp_path):
    whole_dir, whole = uninterrupted
    # killed after step 5 (inside the second stage, whose optimiser is then 1 step old); the last
    # checkpoint is step 3 (mid first stage, mid epoch), so the resume replays steps 4-6
    with pytest.raises(StopTraining):
        train(TWO_STAGES, L2NetFRN, *ubc_like, tmp_path, seed=5, device="cpu", progress=False,
              checkpoint_every=3, stop_after=5)
    assert loop.load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3
    resumed = train(TWO_STAGES, L2NetFRN, *ubc_like, tmp_path, seed=5, device="cpu",
                    progress=False, checkpoint_every=3, resume=True)
    assert resumed.steps == whole.steps == 6
    assert whole.state_dict.keys() == resumed.state_dict.keys()
    for key, value in whole.state_dict.items():
        assert torch.equal(value, resumed.state_dict[key]), key
    assert (tmp_path / "metrics.csv").read_text() == (whole_dir / "metrics.csv").read_text()
    a, b = np.load(tmp_path / "diagnostics.npz"), np.load(whole_dir / "diagnostics.npz")
    for name in ("steps", "hist_a", "hist_b", "hist_w"):
        np.testing.assert_array_equal(a[name], b[name])


def test_resume_from_the_final_checkpoint_rewrites_the_outputs(ubc_like, uninterrupted):
    """A job killed after its last checkpoint: Snakemake deletes the incomplete outputs, the rerun
    resumes at the last step and must write metrics.csv and diagnostics.npz again."""
    out, whole = uninterrupted
    metrics = (out / "metrics.csv").read_text()
    hists = dict(np.load(out / "diagnostics.npz"))
    (out / "metrics.csv").unlink()
    (out / "diagnostics.npz").unlink()
    again = train(TWO_STAGES, L2NetFRN, *ubc_like, out, seed=5, device="cpu", progress=False,
                  checkpoint_every=100, resume=True)
    assert again.steps == whole.steps
    assert (out / "metrics.csv").read_text() == metrics
    for name, value in np.load(out / "diagnostics.npz").items():
        np.testing.assert_array_equal(value, hists[name])


def test_resume_refuses_a_checkpoint_of_another_run(ubc_like, tmp_path):
    patches, labels = ubc_like
    with pytest.raises(StopTraining):
        train(TWO_STAGES, L2NetFRN, patches, labels, tmp_path, seed=5, device="cpu", progress=False,
              checkpoint_every=1, stop_after=1)
    ckpt = tmp_path / "checkpoint.pt"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        start = L2NetFRN().state_dict()
    for kwargs, differs in (({"labels": labels + 1}, "train labels"),
                            ({"init_state": start}, "start weights"),
                            ({"seed": 6}, "seed"),
                            ({"threads": 2}, "threads"),
                            ({"identity": {"train set": "liberty"}}, "train set")):
        args = {"labels": labels, "seed": 5, **kwargs}
        with pytest.raises(DescbenchError) as err:
            train(TWO_STAGES, L2NetFRN, patches, args.pop("labels"), tmp_path, device="cpu",
                  progress=False, resume=True, **args)
        message = str(err.value)
        assert str(ckpt) in message and f"{differs}: checkpoint" in message, message
        assert message.count(": checkpoint") == 1, message  # only what differs is named
    assert loop.load_checkpoint(ckpt)["step"] == 1  # refused runs leave it alone


def test_a_damaged_checkpoint_is_refused_with_a_clear_error(ubc_like, tmp_path):
    with pytest.raises(StopTraining):
        train(TWO_STAGES, L2NetFRN, *ubc_like, tmp_path, seed=5, device="cpu", progress=False,
              checkpoint_every=1, stop_after=1)
    ckpt = tmp_path / "checkpoint.pt"
    good = ckpt.read_bytes()
    wrapped = torch.load(ckpt, weights_only=True)
    flipped = wrapped["payload"].clone()
    flipped[len(flipped) // 2] ^= 1  # one bit inside the serialised model
    cases = [  # (content, what the refusal says)
        ({**wrapped, "payload": flipped}, "payload does not match its SHA-256"),
        ({**wrapped, "version": 99}, "checkpoint format 99"),
        (torch.zeros(3), "not a descbench training checkpoint"),
        ({"step": 1}, "not a descbench training checkpoint"),
        (good[: len(good) // 2], "not a readable checkpoint"),
        (b"", "not a readable checkpoint"),
    ]
    for content, says in cases:
        if isinstance(content, bytes):
            ckpt.write_bytes(content)
        else:
            torch.save(content, ckpt)
        with pytest.raises(DescbenchError) as err:
            train(TWO_STAGES, L2NetFRN, *ubc_like, tmp_path, seed=5, device="cpu", progress=False,
                  resume=True)
        message = str(err.value)
        assert str(ckpt) in message and says in message and "remove it" in message, message


def test_metrics_and_diagnostics_follow_the_contract(uninterrupted):
    out, result = uninterrupted
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].split(",") == list(METRIC_COLUMNS)
    m = np.genfromtxt(out / "metrics.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(m["step"], np.arange(7))
    np.testing.assert_array_equal(m["epoch"], [0, 1, 1, 2, 2, 3, 3])
    # validation FPR95 before training (step 0) and at each epoch end only
    assert list(np.flatnonzero(~np.isnan(m["val_fpr95"]))) == [0, 2, 4, 6]
    assert m["val_fpr95"][0] == pytest.approx(result.val_fpr95_before)
    assert m["val_fpr95"][-1] == pytest.approx(result.val_fpr95_after)
    # stage 1 logs the weights and the dynamic bound; the annealing stage its masked fraction
    assert np.all((m["mean_w"][1:5] > 0) & (m["mean_w"][1:5] <= 1))
    np.testing.assert_allclose(m["bound"][1:5], m["median_b"][1:5] + 1.05 * m["median_a"][1:5],
                               rtol=1e-5)
    assert np.all(np.isnan(m["masked_fraction"][1:5])) and not np.any(np.isnan(m["masked_fraction"][5:]))
    np.testing.assert_allclose(m["bound"][5:], 4.25 / 2)
    np.testing.assert_allclose(m["lr"][5], 1e-3)  # fresh flat-cos schedule of stage b
    diag = np.load(out / "diagnostics.npz")
    np.testing.assert_array_equal(diag["steps"], np.arange(1, 7))
    assert diag["bin_edges"].shape == (loop.HIST_BINS + 1,)
    for name in ("hist_a", "hist_b"):
        assert diag[name].shape == (6, loop.HIST_BINS)
        np.testing.assert_array_equal(diag[name].sum(axis=1), 8)  # one value per class
    np.testing.assert_array_equal(diag["hist_w"].sum(axis=1), [8, 8, 8, 8, 0, 0])


def _short(recipe: TrainRecipe, steps_per_epoch: int = 4) -> TrainRecipe:
    """The mini recipe cut further for the test budget: 16 classes, 2 epochs of ``steps_per_epoch``
    steps, and for the annealing methods the first 2 cycles of 2 steps."""
    stages = recipe.stages[:2] if len(recipe.stages) > 1 else recipe.stages
    return dataclasses.replace(recipe, stages=tuple(
        dataclasses.replace(s, n_classes=16, epochs=min(s.epochs, 2),
                            steps_per_epoch=steps_per_epoch if len(stages) == 1 else 2)
        for s in stages))


def _steps_per_epoch(desc) -> int:
    """Networks with BatchNorm after every convolution validate (eval mode, running statistics)
    well only after ~24 steps, the FRN networks after ~12 (the self-teacher runs before the student, so
    its eval-mode statistics lag one batch behind); twice that keeps every method's learning margin
    above 25 % under 1 and 2 threads (benchmarks/learning_margins.py)."""
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in desc.network().modules())
    return 24 if n_bn > 1 else 12


LEARNING_RATIO = 0.75  # a short schedule must cut the validation FPR95 to below 3/4 of the untrained one


def learning_runs(patches, labels, workdir: Path, threads: int = 1) -> dict[str, tuple[float, float]]:
    """(untrained, trained) validation FPR95 of every learned method after its short schedule, with
    ``threads`` intra-op threads; continuations start from their parent's short-trained model.
    (benchmarks/learning_margins.py reports these under 1 and 2 threads.)"""
    runs, weights = {}, {}
    descs = registry.all_descriptors()
    for name, desc in descs.items():
        if desc.recipe is not None and desc.init_from is None:
            recipe = _short(desc.recipe.scale("mini"), _steps_per_epoch(desc))
            result = train(recipe, desc.network, patches, labels, workdir / name, seed=0,
                           device="cpu", progress=False, threads=threads)
            runs[name] = (result.val_fpr95_before, result.val_fpr95_after)
            weights[name] = result.state_dict
    for name, desc in descs.items():
        if desc.recipe is not None and desc.init_from is not None:
            result = train(_short(desc.recipe.scale("mini")), desc.network, patches, labels,
                           workdir / name, seed=0, device="cpu", init_state=weights[desc.init_from],
                           progress=False, threads=threads)
            assert result.val_fpr95_before == pytest.approx(runs[desc.init_from][1])
            changed = any(not torch.equal(v, weights[desc.init_from][k])
                          for k, v in result.state_dict.items() if v.is_floating_point())
            assert changed, f"{name}: the annealing stage did not update the weights"
            runs[name] = (runs[desc.init_from][0], result.val_fpr95_after)
    return runs


def _prepared_set(root, name, patches, labels):
    set_dir = root / "ubc" / name
    set_dir.mkdir(parents=True)
    np.save(set_dir / "patches.npy", patches)
    np.save(set_dir / "labels.npy", labels.astype(np.int64))
    np.save(set_dir / "pairs_100k.npy", np.zeros((0, 3), np.int64))


@pytest.fixture(scope="module")
def cli_hardnet(ubc_like, tmp_path_factory):
    """``descbench train --method hardnet --scale mini`` (24 steps) on a prepared copy of the small set."""
    root = tmp_path_factory.mktemp("cli")
    _prepared_set(root / "data", "toy", *ubc_like)
    argv = ["train", "--method", "hardnet", "--train-set", "toy", "--seed", "1", "--data",
            str(root / "data"), "--out", str(root / "run"), "--scale", "mini", "--no-progress"]
    assert cli.main(argv) == 0
    return root / "run", argv


@pytest.fixture(scope="module")
def learned_runs(ubc_like, tmp_path_factory):
    return learning_runs(*ubc_like, tmp_path_factory.mktemp("learn"))


LEARNED = sorted(name for name, d in registry.all_descriptors().items() if d.recipe is not None)


@pytest.mark.parametrize("method", LEARNED)
def test_every_method_lowers_validation_fpr95(method, learned_runs):
    untrained, after = learned_runs[method]
    assert untrained > 0.1
    assert after < LEARNING_RATIO * untrained, (untrained, after)


def test_cli_train_writes_a_model_that_loads(cli_hardnet, capsys):
    out, argv = cli_hardnet
    for name in ("model.pt", "metrics.csv", "diagnostics.npz", "checkpoint.pt"):
        assert (out / name).is_file(), name
    net, desc, meta = load_model(out / "model.pt")
    assert desc.name == "hardnet"
    assert meta["seed"] == 1 and meta["train_set"] == "toy" and meta["scale"] == "mini"
    assert meta["threads"] == 1  # the CLI default, recorded
    assert meta["recipe"]["stages"][0]["n_classes"] == 16
    assert set(meta["versions"]) == {"torch", "numpy", "descbench"}
    with torch.no_grad():
        d = net(torch.rand(3, 1, 32, 32))
    torch.testing.assert_close(d.norm(dim=1), torch.ones(3))
    # without --resume an existing run is not overwritten; with it a finished run just re-saves
    assert cli.main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli.main(argv + ["--resume"]) == 0
    assert "validation FPR95" in capsys.readouterr().out
    torch.testing.assert_close(load_model(out / "model.pt")[0].state_dict(), net.state_dict(),
                               rtol=0, atol=0)


def test_cli_resume_refuses_another_train_set(cli_hardnet, ubc_like, capsys):
    out, argv = cli_hardnet
    data = Path(argv[argv.index("--data") + 1])
    patches, labels = ubc_like
    _prepared_set(data, "toy_other", patches, labels + 10_000)
    other = list(argv)
    other[other.index("--train-set") + 1] = "toy_other"
    assert cli.main(other + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert str(out / "checkpoint.pt") in err
    assert "train set: checkpoint toy, this run toy_other" in err and "train labels" in err


def test_cli_resume_refuses_another_thread_count(cli_hardnet, capsys):
    out, argv = cli_hardnet
    assert cli.main(argv + ["--resume", "--threads", "2"]) == 2
    err = capsys.readouterr().err
    assert str(out / "checkpoint.pt") in err and "threads: checkpoint 1, this run 2" in err, err


def test_training_restores_the_callers_thread_count(ubc_like, tmp_path):
    before = torch.get_num_threads()
    seen = []

    def network():
        seen.append(torch.get_num_threads())
        return L2NetFRN()

    recipe = dataclasses.replace(TWO_STAGES, stages=TWO_STAGES.stages[:1])
    with pytest.raises(StopTraining):
        train(recipe, network, *ubc_like, tmp_path, seed=0, device="cpu", progress=False,
              stop_after=1, threads=3)
    assert seen == [3] and torch.get_num_threads() == before


def test_cli_refuses_a_continuation_without_its_start_model(ubc_like, tmp_path, capsys):
    _prepared_set(tmp_path / "data", "toy", *ubc_like)
    argv = ["train", "--method", "balanced", "--train-set", "toy", "--data", str(tmp_path / "data"),
            "--out", str(tmp_path / "run"), "--scale", "mini"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--init-from" in err and "balanced-no-annealing" in err
