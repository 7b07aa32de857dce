"""Distributed training keeps the global batch: 2 gloo processes (torchrun) match 1 process, for
K x P batches and for Self-TNet's ragged ones (classes of 2 and 3 patches, an odd K: the two
processes hold shares of different sizes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import descbench.nets as nets
from descbench.train.loop import load_checkpoint

SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    from descbench.nets import L2NetBN
    from descbench.train.loop import train
    from descbench.train.recipe import Optimiser, Stage, TrainRecipe

    def network():
        return L2NetBN(dropout=0.0)  # dropout masks are drawn per process; switch them off to compare

    ragged = sys.argv[2] == "ragged"
    recipe = TrainRecipe(stages=(Stage(
        name="s", loss="BalanceLoss", loss_kwargs={}, n_classes=7 if ragged else 8, n_per_class=3,
        epochs=1, steps_per_epoch=1,
        optimiser=Optimiser(kind="sgd", lr=0.2, schedule="constant", momentum=0.9),
        augment="affine", teacher=True, sampler=sys.argv[2]),))
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(80), 3)
    if ragged:  # every other class has 2 patches
        labels = np.concatenate([np.repeat(np.arange(80), 2), np.arange(0, 80, 2)])
        labels.sort()
    base = rng.integers(0, 256, (80, 64, 64))
    noise = rng.normal(0, 60, (len(labels), 64, 64))
    patches = np.clip(base[labels] + noise, 0, 255).astype(np.uint8)
    train(recipe, network, patches, labels, sys.argv[1], seed=3, device="cpu", progress=False,
          checkpoint_every=100)
''')


def _final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / "checkpoint.pt")["model"]


@pytest.mark.parametrize("sampler", ["fixed", "ragged"])
def test_two_gloo_processes_match_one_process(tmp_path, sampler):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), sampler], env=env,
                            capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    double = subprocess.run(torchrun + [str(script), str(tmp_path / "two"), sampler], env=env,
                            capture_output=True, text=True, timeout=240)
    assert double.returncode == 0, double.stderr[-3000:]

    one, two = _final_weights(tmp_path / "one"), _final_weights(tmp_path / "two")
    assert one.keys() == two.keys()
    with torch.random.fork_rng():
        torch.manual_seed(3)
        init = nets.L2NetBN(dropout=0.0).state_dict()
    # one step: the global batch's loss, the gradients through the gathered descriptors and the
    # synchronised BatchNorm, the averaged update and the running statistics must all agree. (Over
    # several steps float32 rounding differences - per-rank convolutions, the synchronised BatchNorm -
    # can flip a near-tied hardest negative and the runs drift apart, so more steps test less.)
    for key in one:
        if key.endswith("weight"):
            update = float((one[key] - init[key]).abs().max())
            assert update > 1e-3, key
            assert float((two[key] - one[key]).abs().max()) < 0.01 * update, key
        elif one[key].is_floating_point():  # running mean / variance
            assert not torch.equal(one[key], init[key]), key
            torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
        else:
            assert torch.equal(two[key], one[key]), key
    m1 = np.genfromtxt(tmp_path / "one" / "metrics.csv", delimiter=",", names=True)
    m2 = np.genfromtxt(tmp_path / "two" / "metrics.csv", delimiter=",", names=True)
    np.testing.assert_allclose(m2["loss"][1], m1["loss"][1], rtol=1e-5)
    np.testing.assert_allclose(m2["mean_w"][1], m1["mean_w"][1], rtol=1e-5)  # teacher on all ranks
