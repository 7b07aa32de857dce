"""SOSNet (Tian et al. CVPR 2019): L2-Net with BatchNorm, first-order triplet loss + second-order
similarity regulariser (k = 8).

The SOSNet repository ships weights only; the recipe follows the authors' trainer for SOSNet in
yuruntian/HyNet ``train.py`` (``--desc_name SOSNet``): 512 classes x 2 patches per batch, one epoch =
every patch once (Liberty: 450,092 // 1024 = 439 batches), 200 epochs, Adam lr 0.01 without scheduler,
random flip/rotation augmentation; SOSNet's margin 1.
"""

from __future__ import annotations

from descbench.nets import L2NetBN
from descbench.registry import Descriptor
from descbench.train.recipe import TrainRecipe, hynet_trainer_stage

RECIPE = TrainRecipe(
    stages=(hynet_trainer_stage("sosnet", "SOSNetLoss", {"margin": 1.0, "knn": 8, "so_weight": 1.0}),),
    notes="yuruntian/HyNet train.py with desc_name=SOSNet",
    sources=("github.com/yuruntian/HyNet", "github.com/scape-research/SOSNet"),
)


def network() -> L2NetBN:
    return L2NetBN(dim=128, dropout=0.3)


DESCRIPTORS = [
    Descriptor(name="sosnet", citation="Y. Tian, X. Yu, B. Fan, F. Wu, H. Heijnen, V. Balntas. SOSNet: "
               "Second Order Similarity Regularization for Local Descriptor Learning. CVPR 2019",
               patch_size=32, dim=128, network=network, recipe=RECIPE,
               source="github.com/scape-research/SOSNet"),
]
