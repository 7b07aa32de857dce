"""The difficulty-balanced descriptor (Zhang & Tian, "Self-TNet") and its ablations (docs/method.md).

``balanced-no-annealing`` is stage 1 (balance loss with self-teacher weights and the per-batch
dynamic bound); ``balanced`` continues it with the 15 annealing cycles (``init_from``).

Ablations differ from ``balanced`` only in the swapped part (docs/method.md §6), so each is trained
the way ``balanced`` is, stage 1 followed by annealing:

* ``balanced-no-modulation``: stage 1 with the fixed bound B = 3.7 (m = B/2) instead of the per-batch
  median bound, then the unchanged annealing. Its stage 1 is registered as
  ``balanced-no-modulation-stage1``, which the annealing run continues (``init_from``).
* ``balanced-no-selfsup``: stage 1 with w = 1 for every class (no teacher), then the unchanged
  annealing; stage 1 registered as ``balanced-no-selfsup-stage1``.
  (The annealing loss has neither a bound to modulate nor a teacher, so the swapped part lives in
  stage 1 only; stage 2 is the same for all three.)
* ``balanced-fixed-hardness``: continues ``balanced-no-annealing`` with annealing whose batch classes
  and mask threshold stay at their cycle-0 values (K = 2816, t = -0.10); learning rates unchanged.
"""

from __future__ import annotations

from descbench.nets import L2NetFRN
from descbench.registry import Descriptor
from descbench.train.recipe import TrainRecipe, annealing_stages, balance_stage

CITATION = ("J. Zhang, D. Tian. Self-supervised Example Difficulty Balancing for Local Descriptor "
            "Learning. ACML 2023, PMLR 222:1654-1669 (arXiv 2303.06124)")
SOURCE = "github.com/zonszer/Self-TNet (official code; values in docs/method.md)"
FIXED_BOUND_B = 3.7


def network() -> L2NetFRN:
    """L2-Net with FRN+TLU, dropout 0.3 (docs/method.md §5.1)."""
    return L2NetFRN(dim=128, dropout=0.3)


def _descriptor(name: str, recipe: TrainRecipe, init_from: str | None = None,
                note: str = "") -> Descriptor:
    return Descriptor(name=name, citation=CITATION + note, patch_size=32, dim=128, network=network,
                      recipe=recipe, init_from=init_from, source=SOURCE)


STAGE1 = TrainRecipe(stages=(balance_stage(),), notes="stage 1: balance loss")
ANNEALING = TrainRecipe(stages=annealing_stages(), notes="stage 2: 15 annealing cycles")
FIXED_HARDNESS = TrainRecipe(stages=annealing_stages(fixed_hardness=True),
                             notes="stage 2 with K and threshold held at cycle 0")
NO_MODULATION_STAGE1 = TrainRecipe(stages=(balance_stage(fixed_bound=FIXED_BOUND_B),),
                                   notes="stage 1 with fixed bound B = 3.7")
NO_SELFSUP_STAGE1 = TrainRecipe(stages=(balance_stage(self_supervised=False),),
                                notes="stage 1 with w = 1")

DESCRIPTORS = [
    _descriptor("balanced-no-annealing", STAGE1, note=" [stage 1 only]"),
    _descriptor("balanced", ANNEALING, init_from="balanced-no-annealing"),
    _descriptor("balanced-fixed-hardness", FIXED_HARDNESS, init_from="balanced-no-annealing",
                note=" [ablation: annealing with fixed K and threshold]"),
    _descriptor("balanced-no-modulation-stage1", NO_MODULATION_STAGE1,
                note=" [ablation helper: stage 1 with fixed bound]"),
    _descriptor("balanced-no-modulation", ANNEALING, init_from="balanced-no-modulation-stage1",
                note=" [ablation: fixed bound B = 3.7]"),
    _descriptor("balanced-no-selfsup-stage1", NO_SELFSUP_STAGE1,
                note=" [ablation helper: stage 1 with w = 1]"),
    _descriptor("balanced-no-selfsup", ANNEALING, init_from="balanced-no-selfsup-stage1",
                note=" [ablation: no self-supervised weighting]"),
]
