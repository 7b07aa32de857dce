"""Training recipes: what to optimise, how, on which batch shape, for how long.

A recipe is a sequence of stages; each stage gets a fresh optimiser and its own LR schedule, which is
how the annealing stage's 15 cycles (each a fresh fastai ``Learner``, docs/method.md §4) are expressed. A
recipe is plain data (JSON-able via ``to_json``) and carries the paper's values; ``scale("mini")``
shrinks it for the offline preset: batch classes / 80 (at least 16) and total steps / 2000 (at least
2 per stage, at most 2 epochs per stage; epochs that follow the training set are taken at Liberty's
length, so the mini schedule does not depend on the tiny mini sets), every stage (annealing cycle)
kept; Adam learning rates unchanged, SGD's scaled with the batch (linear scaling rule: HardNet's lr 10
at K = 16 does not learn); validation on held-out classes (the paper recipes, as the authors' code,
train on every class and validate on a fixed slice of them).

Schedules (functions of the step within a stage, ``lr_at`` / ``beta1_at``):

* ``one_cycle`` - fastai ``fit_one_cycle``: cosine warm-up from lr/div to lr over ``pct_start`` of the
  steps, then cosine down to lr/div_final; beta1 (fastai "moms") cosine 0.95 -> 0.85 -> 0.95.
* ``flat_cos`` - fastai ``fit_flat_cos``: lr flat for ``pct_start``, then cosine to lr/div_final.
* ``linear`` - HardNet's Lua-style SGD decay (DagnyT/hardnet ``adjust_learning_rate``, which runs after
  each update and counts from 0 on its first call): update k (0-based) runs at
  lr * (1 - max(k - 1, 0) / (decay_span * total_steps)), so the first two updates run at lr; HardNet's
  denominator n_triplets * epochs / batch size = 48,828.125 batches is ``decay_span`` = 48,828.125 /
  48,830 of its steps (a fraction, so a shortened schedule keeps the shape).
* ``constant`` - HyNet/SOSNet's trainer without scheduler.

A stage's epoch length is fixed (``steps_per_epoch``) or follows the training set
(``patches_per_step``: HyNet's trainer makes int(#patches / 1024) batches per epoch);
``TrainRecipe.for_train_set`` resolves the latter before a run, and before ``scale``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, replace
from typing import Any

from descbench.errors import DescbenchError

SCALES = ("paper", "mini")
AUGMENTATIONS = ("affine", "flip", "rot90_flipud", "none")
SAMPLERS = ("fixed", "ragged")
RESIZES = ("pil", "cv2")
MINI_CLASS_DIVISOR = 80
MINI_MIN_CLASSES = 16
MINI_STEP_DIVISOR = 2000
MINI_MIN_STEPS = 2
MINI_MAX_EPOCHS = 2
LIBERTY_PATCHES = 450092  # the paper's training set: mini shrinks epoch lengths that follow the set from it


@dataclass(frozen=True)
class Optimiser:
    """Optimiser and LR schedule of one stage.

    ``kind``: ``adamw`` (fastai Adam: decoupled weight decay, betas (beta1, beta2), no decay on biases
    and normalisation parameters), ``adam`` (torch Adam, L2 decay), ``sgd`` (momentum, dampening, L2).
    """

    kind: str
    lr: float
    schedule: str
    weight_decay: float = 0.0
    beta2: float = 0.99
    eps: float = 1e-5
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)
    momentum: float = 0.9
    dampening: float = 0.0
    div: float = 25.0
    div_final: float = 1e5
    pct_start: float = 0.25
    decay_span: float = 1.0  # ``linear`` only: the decay reaches 0 after this fraction of the steps

    def lr_at(self, step: int, total: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based) out of ``total``."""
        pos = step / max(total, 1)
        if self.schedule == "one_cycle":
            if pos < self.pct_start:
                return _cos(self.lr / self.div, self.lr, pos / self.pct_start)
            return _cos(self.lr, self.lr / self.div_final,
                        (pos - self.pct_start) / (1 - self.pct_start))
        if self.schedule == "flat_cos":
            if pos < self.pct_start:
                return self.lr
            return _cos(self.lr, self.lr / self.div_final,
                        (pos - self.pct_start) / (1 - self.pct_start))
        if self.schedule == "linear":
            return self.lr * (1.0 - max(step - 1, 0) / (self.decay_span * max(total, 1)))
        if self.schedule == "constant":
            return self.lr
        raise DescbenchError(f"unknown LR schedule {self.schedule!r}; use one_cycle, flat_cos, "
                             "linear or constant")

    def beta1_at(self, step: int, total: int) -> float:
        """fastai's momentum cycle (one_cycle only); the middle value otherwise is moms[0]."""
        if self.schedule != "one_cycle":
            return self.moms[0]
        pos = step / max(total, 1)
        if pos < self.pct_start:
            return _cos(self.moms[0], self.moms[1], pos / self.pct_start)
        return _cos(self.moms[1], self.moms[2], (pos - self.pct_start) / (1 - self.pct_start))


def _cos(start: float, end: float, pct: float) -> float:
    """fastai's SchedCos: cosine interpolation from start (pct 0) to end (pct 1)."""
    return start + (1 + math.cos(math.pi * (1 - pct))) * (end - start) / 2


@dataclass(frozen=True)
class Stage:
    """One optimiser lifetime: loss, batch shape (K classes x P patches), length, augmentation.

    ``last_batch_classes``: the classes of each epoch's final batch when it is a partial one
    (HardNet: 5,000,000 pairs in batches of 1024 leave a last batch of 832).
    """

    name: str
    loss: str  # class name in descbench.train.losses
    loss_kwargs: dict[str, Any]
    n_classes: int
    n_per_class: int
    epochs: int
    steps_per_epoch: int | None  # None: len(train set) // patches_per_step (for_train_set)
    optimiser: Optimiser
    # "affine" (docs/method.md §5.3 chain + class-wise flip/transpose), "flip" (only those, HardNet+),
    # "rot90_flipud" (HyNet's data_aug), "none"
    augment: str
    teacher: bool = False  # the loss uses the self-teacher (eval-mode forward of the same network)
    raw_desc: bool = False  # the loss needs the pre-normalisation descriptors (HyNet)
    last_batch_classes: int | None = None
    patches_per_step: int | None = None
    # "fixed": K classes x P patches, short classes padded with repeats (sampler.BatchSampler);
    # "ragged": Self-TNet's draw, P patches or all of a class's (sampler.RaggedBatchSampler)
    sampler: str = "fixed"

    @property
    def total_steps(self) -> int:
        if self.steps_per_epoch is None:
            raise DescbenchError(f"recipe stage {self.name!r}: its epoch length follows the training "
                                 "set; resolve it with TrainRecipe.for_train_set first")
        return self.epochs * self.steps_per_epoch

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTATIONS:
            raise DescbenchError(f"recipe stage {self.name!r}: augment={self.augment!r}; use one of "
                                 f"{', '.join(AUGMENTATIONS)}")
        if self.sampler not in SAMPLERS:
            raise DescbenchError(f"recipe stage {self.name!r}: sampler={self.sampler!r}; use one of "
                                 f"{', '.join(SAMPLERS)}")
        if (self.steps_per_epoch is None) == (self.patches_per_step is None):
            raise DescbenchError(f"recipe stage {self.name!r}: give exactly one of steps_per_epoch "
                                 "and patches_per_step")
        if self.last_batch_classes is not None and not 2 <= self.last_batch_classes <= self.n_classes:
            raise DescbenchError(f"recipe stage {self.name!r}: last_batch_classes="
                                 f"{self.last_batch_classes} must lie in [2, K={self.n_classes}]")

    def classes_at(self, step: int) -> int:
        """Classes in the batch of stage step ``step`` (K, or the partial last batch of an epoch)."""
        last = (step + 1) % self.steps_per_epoch == 0
        return self.last_batch_classes if last and self.last_batch_classes else self.n_classes

    def build_loss(self):
        from descbench.train import losses

        cls = getattr(losses, self.loss, None)
        if cls is None:
            raise DescbenchError(f"recipe stage {self.name!r}: no loss {self.loss!r} in "
                                 "descbench.train.losses")
        return cls(**self.loss_kwargs)


@dataclass(frozen=True)
class TrainRecipe:
    """The stages of one method's training, with the scale they were made for."""

    stages: tuple[Stage, ...]
    scale_name: str = "paper"
    notes: str = ""
    sources: tuple[str, ...] = field(default_factory=tuple)
    # 64->32 resize of the network input (training and validation): "pil" (antialiased bilinear,
    # torchvision's Resize, Self-TNet) or "cv2" (cv2.resize INTER_LINEAR: HardNet, HyNet, SOSNet)
    resize: str = "pil"
    # validation pairs from held-out classes (True, the mini default) or from a fixed slice of the
    # training classes, every class being trained on as in the authors' code (False, the paper)
    hold_out: bool = False

    def __post_init__(self) -> None:
        if self.resize not in RESIZES:
            raise DescbenchError(f"recipe resize={self.resize!r}; use one of {', '.join(RESIZES)}")

    @property
    def total_steps(self) -> int:
        return sum(s.total_steps for s in self.stages)

    def for_train_set(self, n_patches: int) -> "TrainRecipe":
        """Epoch lengths that follow the training set resolved for one of ``n_patches`` patches."""
        stages = []
        for s in self.stages:
            if s.patches_per_step is not None:
                if n_patches < s.patches_per_step:
                    raise DescbenchError(f"recipe stage {s.name!r}: an epoch is #patches // "
                                         f"{s.patches_per_step}, but the training set has only "
                                         f"{n_patches} patches")
                s = replace(s, steps_per_epoch=n_patches // s.patches_per_step, patches_per_step=None)
            stages.append(s)
        return replace(self, stages=tuple(stages))

    def batch_problems(self, n_patches: int, n_classes: int, n_classes_with_single: int) -> list[str]:
        """Why a training set of ``n_patches`` patches cannot fill this recipe's batches: one line per stage
        whose K classes exceed the set's training classes (``n_classes`` with >= 2 patches for the fixed
        sampler, ``n_classes_with_single`` for the ragged one) or whose epoch needs more patches than the set
        has. Checked before training, so an impossible recipe fails before its first step."""
        problems = []
        for s in self.stages:
            available = n_classes_with_single if s.sampler == "ragged" else n_classes
            if max(s.n_classes, s.last_batch_classes or 0) > available:
                problems.append(f"stage {s.name!r} draws K={s.n_classes} classes per batch, but the training "
                                f"set has {available} training classes")
            if s.patches_per_step is not None and n_patches < s.patches_per_step:
                problems.append(f"stage {s.name!r} makes #patches // {s.patches_per_step} steps per epoch, but "
                                f"the training set has only {n_patches} patches")
        return problems

    def scale(self, name: str) -> "TrainRecipe":
        """This recipe at scale ``name``: ``paper`` (itself) or ``mini`` (see module docstring)."""
        if name == "paper":
            return self
        if name != "mini":
            raise DescbenchError(f"unknown scale {name!r}; use one of {', '.join(SCALES)}")
        if self.scale_name != "paper":
            raise DescbenchError(f"recipe is already scaled to {self.scale_name!r}")
        return replace(self, stages=tuple(_mini_stage(s) for s in self.stages), scale_name="mini",
                       hold_out=True)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _mini_stage(stage: Stage) -> Stage:
    if stage.steps_per_epoch is None:  # shrink the paper schedule on Liberty, whatever the mini set
        stage = replace(stage, steps_per_epoch=LIBERTY_PATCHES // stage.patches_per_step,
                        patches_per_step=None)
    epochs = min(stage.epochs, MINI_MAX_EPOCHS)
    total = max(MINI_MIN_STEPS, round(stage.total_steps / MINI_STEP_DIVISOR))
    steps = max(1, math.ceil(total / epochs))
    classes = max(MINI_MIN_CLASSES, round(stage.n_classes / MINI_CLASS_DIVISOR))
    optimiser = stage.optimiser
    if optimiser.kind == "sgd":  # linear scaling rule: plain SGD's step must shrink with the batch
        optimiser = replace(optimiser, lr=optimiser.lr * classes / stage.n_classes)
    return replace(stage, epochs=epochs, steps_per_epoch=steps, n_classes=classes, optimiser=optimiser,
                   last_batch_classes=None)


# --- the HyNet authors' train.py (yuruntian/HyNet), which trains both SOSNet's and HyNet's losses ----------

HYNET_PATCHES_PER_STEP = 1024  # its "epoch": int(#patches / 1024) batches (utils.py:121)


def hynet_trainer_stage(name: str, loss: str, loss_kwargs: dict[str, Any], **stage_kwargs: Any) -> Stage:
    """512 pairs per batch, 200 epochs of int(#patches / 1024) batches (Liberty 439, Notre Dame 457,
    Yosemite 618), Adam lr 0.01 (constant), HyNet's rot90/flipud augmentation."""
    return Stage(
        name=name, loss=loss, loss_kwargs=loss_kwargs, n_classes=512, n_per_class=2, epochs=200,
        steps_per_epoch=None, patches_per_step=HYNET_PATCHES_PER_STEP,
        optimiser=Optimiser(kind="adam", lr=1e-2, schedule="constant", moms=(0.9, 0.9, 0.9),
                            beta2=0.999, eps=1e-8),
        augment="rot90_flipud", **stage_kwargs)


# --- shared paper recipes of the balanced method (docs/method.md §2-§5) --------------------------------

def balance_stage(**loss_kwargs: Any) -> Stage:
    """Stage 1: balance loss, 2560 classes x 3 patches, 25 epochs x 1582 steps, AdamW one-cycle 3.3e-3."""
    return Stage(
        name="stage1", loss="BalanceLoss",
        loss_kwargs={"R": 1.0, "A": 1.05, "tau_lower": -0.55, "tau_upper": 0.10, **loss_kwargs},
        n_classes=2560, n_per_class=3, epochs=25, steps_per_epoch=1582,
        optimiser=Optimiser(kind="adamw", lr=3.3e-3, schedule="one_cycle", weight_decay=0.1,
                            div=25.0, div_final=1e5, pct_start=0.25),
        augment="affine", teacher=loss_kwargs.get("self_supervised", True), sampler="ragged",
    )


ANNEAL_CYCLES = 15
ANNEAL_START_CLASSES = 2944
ANNEAL_CLASS_STEP = 128
ANNEAL_START_THRESHOLD = -0.10
ANNEAL_THRESHOLD_STEP = 0.05
ANNEAL_LR = 1.5e-6
ANNEAL_LR_FACTOR = 0.75
ANNEAL_STEPS = 1400
ANNEAL_B = 4.25


def annealing_table(cycles: int = ANNEAL_CYCLES) -> list[tuple[int, float, float]]:
    """(K_i, t_i, lr_i) per cycle: K_i = 2944 - 128(i+1), t_i = -0.10 + 0.05 i, lr_i = 1.5e-6 0.75^i."""
    return [(ANNEAL_START_CLASSES - ANNEAL_CLASS_STEP * (i + 1),
             round(ANNEAL_START_THRESHOLD + ANNEAL_THRESHOLD_STEP * i, 10),
             ANNEAL_LR * ANNEAL_LR_FACTOR ** i) for i in range(cycles)]


def annealing_stages(fixed_hardness: bool = False) -> tuple[Stage, ...]:
    """Stage 2 (docs/method.md §4): one stage per cycle, fresh AdamW, flat-cos (pct 0.6), P = 2, B = 4.25.

    Each cycle is a fresh fastai Adam (mom 0.9) and ``fit_flat_cos`` schedules no momentum, so
    beta1 = 0.9 throughout (Self-TNet ftrain.py:187-210).

    ``fixed_hardness`` holds K and the mask threshold at their cycle-0 values (learning rates unchanged).
    """
    table = annealing_table()
    stages = []
    for i, (k, t, lr) in enumerate(table):
        if fixed_hardness:
            k, t = table[0][0], table[0][1]
        stages.append(Stage(
            name=f"anneal{i:02d}", loss="AnnealingLoss",
            loss_kwargs={"threshold": t, "B": ANNEAL_B, "R": 1.0},
            n_classes=k, n_per_class=2, epochs=1, steps_per_epoch=ANNEAL_STEPS,
            optimiser=Optimiser(kind="adamw", lr=lr, schedule="flat_cos", weight_decay=0.1,
                                pct_start=0.6, div_final=1e5, moms=(0.9, 0.9, 0.9)),
            augment="affine", sampler="ragged",
        ))
    return tuple(stages)
