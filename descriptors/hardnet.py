"""HardNet and HardNet+ (Mishchuk et al. 2017): L2-Net with BatchNorm, hardest-in-batch triplet margin loss.

Recipe from the authors' training script (DagnyT/hardnet ``code/HardNet.py``): 1024 pairs per batch
(K = 1024 classes x P = 2); an epoch is 5,000,000 pairs, i.e. 4,882 full batches and a last one of 832
pairs; 10 epochs; SGD with lr 10 ("Yes, ten is not typo"), momentum 0.9, dampening 0.9, weight decay
1e-4, and its Lua-style linear decay (``adjust_learning_rate`` counts from 0 after the first update:
the first two updates run at lr, then lr * (1 - (k - 1) * 1024 / (5,000,000 * 10))); margin 1 with
anchor swap; patches resized 64->32 with ``cv2.resize`` (INTER_LINEAR). The network standardises every
patch itself; dropout 0.3 as in kornia's HardNet.

``hardnet`` is ``run_me.sh``'s plain HardNet (``--fliprot=False``); ``hardnet-plus`` is the published
HardNet+ (``--fliprot=True``, HardNet.py:119 and 262-273): per pair, transpose with p 0.5 and flip the
columns with p 0.5, both patches alike.
"""

from __future__ import annotations

from dataclasses import replace

from descbench.nets import L2NetBN
from descbench.registry import Descriptor
from descbench.train.recipe import Optimiser, Stage, TrainRecipe

PAIRS_PER_EPOCH = 5_000_000
BATCH_PAIRS = 1024
EPOCHS = 10
STEPS_PER_EPOCH = -(-PAIRS_PER_EPOCH // BATCH_PAIRS)  # 4883: DataLoader without drop_last

RECIPE = TrainRecipe(
    stages=(Stage(
        name="hardnet", loss="HardNetLoss", loss_kwargs={"margin": 1.0, "anchor_swap": True},
        n_classes=BATCH_PAIRS, n_per_class=2, epochs=EPOCHS,
        steps_per_epoch=STEPS_PER_EPOCH,
        last_batch_classes=PAIRS_PER_EPOCH % BATCH_PAIRS,
        optimiser=Optimiser(kind="sgd", lr=10.0, schedule="linear", momentum=0.9, dampening=0.9,
                            weight_decay=1e-4,
                            decay_span=PAIRS_PER_EPOCH * EPOCHS / BATCH_PAIRS / (STEPS_PER_EPOCH * EPOCHS)),
        augment="none"),),
    notes="DagnyT/hardnet code/HardNet.py defaults, run_me.sh --fliprot=False",
    sources=("github.com/DagnyT/hardnet",),
    resize="cv2",
)
PLUS_RECIPE = replace(RECIPE, stages=(replace(RECIPE.stages[0], name="hardnet-plus", augment="flip"),),
                      notes="DagnyT/hardnet code/HardNet.py defaults, run_me.sh --fliprot=True")

CITATION = ("A. Mishchuk, D. Mishkin, F. Radenovic, J. Matas. Working hard to know your neighbor's "
            "margins: Local descriptor learning loss. NeurIPS 2017")


def network() -> L2NetBN:
    return L2NetBN(dim=128, dropout=0.3)


DESCRIPTORS = [
    Descriptor(name="hardnet", citation=CITATION, patch_size=32, dim=128, network=network,
               recipe=RECIPE, source="github.com/DagnyT/hardnet"),
    Descriptor(name="hardnet-plus", citation=CITATION + " [HardNet+: flip/rotation augmentation]",
               patch_size=32, dim=128, network=network, recipe=PLUS_RECIPE,
               source="github.com/DagnyT/hardnet"),
]
