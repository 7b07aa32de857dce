"""SOSNet (Tian et al. CVPR 2019): the released SOSNet32x32 network, first-order triplet loss +
second-order similarity regulariser (k = 8).

The network is the authors' released ``SOSNet32x32`` (yuruntian/SOSNet ``codes/sosnet_model.py``, the
model definition that ships next to the ``sosnet-weights/*.pth`` files): ``descbench.nets.SOSNet32x32``
with dropout 0.1, whose state_dict keys match the released weights. The recipe follows the authors'
trainer for SOSNet in yuruntian/HyNet ``train.py`` (``--desc_name SOSNet``): 512 classes x 2 patches per
batch, one epoch = int(#patches / 1024) batches of the training set (Liberty 439, Notre Dame 457,
Yosemite 618), 200 epochs, Adam lr 0.01 without scheduler, HyNet's rot90/flipud augmentation, patches
resized 64->32 with ``cv2.resize`` (INTER_LINEAR). The loss keeps SOSNet's paper margin 1; that
trainer's ``--margin`` defaults to 1.2 (yuruntian/HyNet ``train.py`` line 309).
"""

from __future__ import annotations

from descbench.nets import SOSNet32x32
from descbench.registry import Descriptor
from descbench.train.recipe import TrainRecipe, hynet_trainer_stage

RECIPE = TrainRecipe(
    stages=(hynet_trainer_stage("sosnet", "SOSNetLoss", {"margin": 1.0, "knn": 8, "so_weight": 1.0}),),
    notes="yuruntian/HyNet train.py with desc_name=SOSNet",
    sources=("github.com/yuruntian/HyNet", "github.com/scape-research/SOSNet"),
    resize="cv2",
)


def network() -> SOSNet32x32:
    return SOSNet32x32(dim=128, dropout=0.1)


DESCRIPTORS = [
    Descriptor(name="sosnet", citation="Y. Tian, X. Yu, B. Fan, F. Wu, H. Heijnen, V. Balntas. SOSNet: "
               "Second Order Similarity Regularization for Local Descriptor Learning. CVPR 2019",
               patch_size=32, dim=128, network=network, recipe=RECIPE,
               source="github.com/scape-research/SOSNet"),
]
