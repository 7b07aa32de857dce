"""Small training cases shared by the training-loop and progress tests."""

from __future__ import annotations

from descbench.data import mini
from descbench.train.recipe import Optimiser, Stage, TrainRecipe

# two stages (the balanced stage with its self-teacher, then annealing): 3 epochs of 2 steps
TWO_STAGES = TrainRecipe(stages=(
    Stage(name="a", loss="BalanceLoss", loss_kwargs={}, n_classes=8, n_per_class=3, epochs=2,
          steps_per_epoch=2, optimiser=Optimiser(kind="adamw", lr=3e-3, schedule="one_cycle",
                                                 weight_decay=0.1), augment="affine", teacher=True),
    Stage(name="b", loss="AnnealingLoss", loss_kwargs={"threshold": -0.1}, n_classes=8,
          n_per_class=2, epochs=1, steps_per_epoch=2,
          optimiser=Optimiser(kind="adamw", lr=1e-3, schedule="flat_cos", pct_start=0.6,
                              weight_decay=0.1), augment="affine"),
))


def ubc_like_set():
    """A small UBC-like training set (300 3D points, 2-5 patches each) from the make-mini generator."""
    data = mini.make_ubc_set("mini_liberty", seed=0, part=0, scale=0.5)
    return data["patches"], data["labels"]
