"""HyNet (Tian et al. NeurIPS 2020): L2-Net with FRN+TLU, hybrid-similarity triplet loss (margin 1.2,
alpha 2) plus the descriptor-norm regulariser (weight 0.1).

Recipe from the authors' yuruntian/HyNet ``train.py`` defaults: 512 classes x 2 patches per batch, one
epoch = int(#patches / 1024) batches of the training set (Liberty 439, Notre Dame 457, Yosemite 618;
utils.py:121), 200 epochs, Adam lr 0.01 without scheduler, dropout 0.3; patches resized 64->32 with
``cv2.resize`` (INTER_LINEAR, utils.py:36) and, per pair, rotated by 90/180/270 degrees with p 0.5, then
flipped upside down with p 0.5 (``data_aug``, utils.py:368-391).
"""

from __future__ import annotations

from descbench.nets import L2NetFRN
from descbench.registry import Descriptor
from descbench.train.recipe import TrainRecipe, hynet_trainer_stage

RECIPE = TrainRecipe(
    stages=(hynet_trainer_stage("hynet", "HyNetLoss", {"margin": 1.2, "alpha": 2.0, "l2_weight": 0.1},
                                raw_desc=True),),
    notes="yuruntian/HyNet train.py defaults",
    sources=("github.com/yuruntian/HyNet",),
    resize="cv2",
)


def network() -> L2NetFRN:
    return L2NetFRN(dim=128, dropout=0.3, init="pytorch")  # HyNet keeps PyTorch's default init


DESCRIPTORS = [
    Descriptor(name="hynet", citation="Y. Tian, A. Barroso-Laguna, T. Ng, V. Balntas, K. Mikolajczyk. "
               "HyNet: Learning Local Descriptor with Hybrid Similarity Measure and Triplet Loss. "
               "NeurIPS 2020", patch_size=32, dim=128, network=network, recipe=RECIPE,
               source="github.com/yuruntian/HyNet"),
]
