"""HyNet (Tian et al. NeurIPS 2020): L2-Net with FRN+TLU, hybrid-similarity triplet loss (margin 1.2,
alpha 2) plus the descriptor-norm regulariser (weight 0.1).

Recipe from the authors' yuruntian/HyNet ``train.py`` defaults: 512 classes x 2 patches per batch, one
epoch = every patch once (Liberty: 450,092 // 1024 = 439 batches), 200 epochs, Adam lr 0.01 without
scheduler, dropout 0.3, random flip/rotation augmentation (``flag_dataAug``).
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
)


def network() -> L2NetFRN:
    return L2NetFRN(dim=128, dropout=0.3, init="pytorch")  # HyNet keeps PyTorch's default init


DESCRIPTORS = [
    Descriptor(name="hynet", citation="Y. Tian, A. Barroso-Laguna, T. Ng, V. Balntas, K. Mikolajczyk. "
               "HyNet: Learning Local Descriptor with Hybrid Similarity Measure and Triplet Loss. "
               "NeurIPS 2020", patch_size=32, dim=128, network=network, recipe=RECIPE,
               source="github.com/yuruntian/HyNet"),
]
