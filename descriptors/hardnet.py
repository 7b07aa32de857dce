"""HardNet (Mishchuk et al. 2017): L2-Net with BatchNorm, hardest-in-batch triplet margin loss.

Recipe from the authors' updated training script (DagnyT/hardnet ``code/HardNet.py``): 1024 pairs per
batch (K = 1024 classes x P = 2), 5,000,000 pairs per epoch (4883 batches), 10 epochs, SGD with
lr 10 ("Yes, ten is not typo"), momentum 0.9, dampening 0.9, weight decay 1e-4, linear decay to 0;
margin 1 with anchor swap; no augmentation (UBC script default ``fliprot=False``); patches resized
64->32. The network standardises every patch itself; dropout 0.3 as in kornia's HardNet.
"""

from __future__ import annotations

from descbench.nets import L2NetBN
from descbench.registry import Descriptor
from descbench.train.recipe import Optimiser, Stage, TrainRecipe

RECIPE = TrainRecipe(
    stages=(Stage(
        name="hardnet", loss="HardNetLoss", loss_kwargs={"margin": 1.0, "anchor_swap": True},
        n_classes=1024, n_per_class=2, epochs=10, steps_per_epoch=4883,
        optimiser=Optimiser(kind="sgd", lr=10.0, schedule="linear", momentum=0.9, dampening=0.9,
                            weight_decay=1e-4),
        augment="none"),),
    notes="DagnyT/hardnet code/HardNet.py defaults",
    sources=("github.com/DagnyT/hardnet",),
)


def network() -> L2NetBN:
    return L2NetBN(dim=128, dropout=0.3)


DESCRIPTORS = [
    Descriptor(name="hardnet", citation="A. Mishchuk, D. Mishkin, F. Radenovic, J. Matas. Working "
               "hard to know your neighbor's margins: Local descriptor learning loss. NeurIPS 2017",
               patch_size=32, dim=128, network=network, recipe=RECIPE,
               source="github.com/DagnyT/hardnet"),
]
