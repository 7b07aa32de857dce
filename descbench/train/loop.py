"""The one training loop for every method: stages -> epochs -> steps, resumable to identical weights.

Per step: the sampler gives a K x P class-major batch (a pure function of seed, epoch, step); the
patches are augmented (or plainly resized) on the device; the network's descriptors go to the stage's
loss together with the labels and a ``LossContext`` whose teacher runs the same network in eval mode
without gradient (train mode restored afterwards). The optimiser (fresh per stage) gets its LR and
beta1 from the recipe's schedule as a pure function of the step.

Reproducibility: the network's initialisation and dropout draw from torch's global generator, which the
loop seeds from ``seed`` inside ``torch.random.fork_rng`` (the caller's state is untouched);
augmentation draws from its own CPU ``torch.Generator``. A checkpoint (every ``checkpoint_every`` steps
and at the end) stores model, optimiser, schedule position, step counter, both generator states,
metrics and diagnostics; resuming from it replays the remaining steps bit-identically on CPU.

Distributed (``torchrun --nproc-per-node=N``; gloo on CPU, nccl on CUDA): every rank draws the same
global batch and augmentation parameters, runs the network on its contiguous share of whole classes
(shares differ in size when classes do; the gathers pad and trim), and all-gathers the descriptors
with gradient, so mining and loss see the global batch. BatchNorm statistics are synchronised over the global batch too (CPU-capable sync below), and
gradients are averaged over ranks, so N processes compute what one process computes on the same batch
(up to float rounding and dropout masks, which each rank draws for its own share).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from descbench.errors import DescbenchError
from descbench.fileio import atomic_path, write_text
from descbench.progress import progress as progress_of
from descbench.train import augment as aug
from descbench.train.losses import LossContext
from descbench.train.recipe import Stage, TrainRecipe
from descbench.train.sampler import (BatchSampler, ClassIndex, RaggedBatchSampler, class_of,
                                     split_validation)

log = logging.getLogger(__name__)

# training progress in a log (no terminal, or progress=False): step, mean loss since the last line,
# lr, steps/s and ETA every LOG_EVERY_PERCENT of the run's steps or LOG_EVERY_SECONDS, whichever first
LOG_EVERY_PERCENT = 5.0
LOG_EVERY_SECONDS = 60.0

METRIC_COLUMNS = ("step", "epoch", "loss", "lr", "median_a", "median_b", "bound", "mean_w",
                  "masked_fraction", "val_fpr95", "val_classes")
# what the validation pairs are drawn from (the val_classes column, on rows with a val_fpr95)
VAL_CLASSES = {True: "held-out", False: "training-slice"}
HIST_BINS = 50
HIST_EDGES = np.linspace(0.0, 2.0, HIST_BINS + 1)  # distances on the unit sphere; w in [0, 1]
CHECKPOINT_VERSION = 3  # 2: the run identity is stored; 3: a SHA-256 of the payload, threads, samplers
CHECKPOINT_FORMAT = "descbench-checkpoint"
EVAL_CHUNK = 1024


@dataclass
class TrainResult:
    state_dict: dict[str, torch.Tensor]
    val_fpr95_before: float
    val_fpr95_after: float
    steps: int
    seconds: float
    rank: int = 0
    world_size: int = 1


# --- distributed helpers -----------------------------------------------------------------------

def _dist() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> bool:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1); True if joined here."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend=backend)
    return True


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DescbenchError("--device cuda: no CUDA device is visible; use --device cpu or auto")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if name == "cpu":
        return torch.device("cpu")
    raise DescbenchError(f"unknown device {name!r}; use auto, cpu or cuda")


class _GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the batch of all ranks (gloo and nccl alike).

    Installed by swapping ``__class__`` so parameter and buffer names stay those of BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        # two passes (mean, then centred squares) avoid the cancellation of E[x^2] - E[x]^2
        count = torch.tensor([float(x.numel() // x.shape[1])], device=x.device, dtype=x.dtype)
        total = all_reduce(torch.cat([x.sum(dim=(0, 2, 3)), count]))
        n = total[-1].detach()
        mean = total[:-1] / n
        centred = x - mean[None, :, None, None]
        var = all_reduce(centred.pow(2).sum(dim=(0, 2, 3))) / n
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
        out = centred * torch.rsqrt(var[None, :, None, None] + self.eps)
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out


def _sync_batchnorm(net: nn.Module) -> None:
    for module in net.modules():
        if type(module) is nn.BatchNorm2d:
            if module.momentum is None or not module.track_running_stats:
                raise DescbenchError("distributed training supports BatchNorm2d with momentum and "
                                     "running statistics only")
            module.__class__ = _GlobalBatchNorm2d


def _average_gradients(net: nn.Module, world: int) -> None:
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def _padded(local: torch.Tensor, rows: int) -> torch.Tensor:
    """``local`` with zero rows appended up to ``rows`` (all_gather needs equal shapes)."""
    if local.shape[0] == rows:
        return local
    return torch.cat([local, local.new_zeros((rows - local.shape[0],) + local.shape[1:])])


def _gather_with_grad(local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate every rank's tensor (rank r holds ``sizes[r]`` rows); the backward pass hands
    each rank the gradient of its part."""
    import warnings

    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # its suggested replacement has no autograd support
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(_padded(local, max(sizes)))
    return torch.cat([part[:n] for part, n in zip(parts, sizes)], dim=0)


def _gather_no_grad(local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    local = _padded(local.contiguous(), max(sizes))
    parts = [torch.empty_like(local) for _ in range(_dist()[1])]
    torch.distributed.all_gather(parts, local)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)], dim=0)


def _gather_objects(obj: Any) -> list[Any]:
    out: list[Any] = [None] * _dist()[1]
    torch.distributed.all_gather_object(out, obj)
    return out


# --- optimiser ---------------------------------------------------------------------------------

# fastai2 0.0.16's norm_types (torch_core.py:518): every parameter of these is exempt from weight decay
FASTAI_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d,
                     nn.InstanceNorm2d, nn.InstanceNorm3d)


def fastai_no_decay(net: nn.Module) -> list[nn.Parameter]:
    """The parameters fastai's ``Learner(wd_bn_bias=False)`` does not decay: those of its norm
    layer types and every module's ``bias`` (fastai2 0.0.16 torch_core.py:521-526 ``bn_bias_params``,
    learner.py:129-133). FRN's ``weight`` and TLU's ``tau`` *are* decayed."""
    exempt: list[nn.Parameter] = []
    for module in net.modules():
        if isinstance(module, FASTAI_NORM_TYPES):
            exempt.extend(module.parameters(recurse=False))
        elif isinstance(getattr(module, "bias", None), nn.Parameter):
            exempt.append(module.bias)
    return exempt


def build_optimiser(stage: Stage, net: nn.Module) -> torch.optim.Optimizer:
    """The stage's optimiser; decoupled weight decay skips biases and normalisation parameters."""
    opt = stage.optimiser
    params = [p for p in net.parameters() if p.requires_grad]
    if opt.kind == "adamw":
        exempt = {id(p) for p in fastai_no_decay(net)}
        decay = [p for p in params if id(p) not in exempt]
        no_decay = [p for p in params if id(p) in exempt]
        groups = [{"params": decay, "weight_decay": opt.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=opt.lr, betas=(opt.moms[0], opt.beta2), eps=opt.eps)
    if opt.kind == "adam":
        return torch.optim.Adam(params, lr=opt.lr, betas=(opt.moms[0], opt.beta2), eps=opt.eps,
                                weight_decay=opt.weight_decay)
    if opt.kind == "sgd":
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, dampening=opt.dampening,
                               weight_decay=opt.weight_decay)
    raise DescbenchError(f"recipe stage {stage.name!r}: unknown optimiser {opt.kind!r}; use adamw, "
                         "adam or sgd")


def _set_schedule(optimiser: torch.optim.Optimizer, stage: Stage, step: int) -> float:
    lr = stage.optimiser.lr_at(step, stage.total_steps)
    beta1 = stage.optimiser.beta1_at(step, stage.total_steps)
    for group in optimiser.param_groups:
        group["lr"] = lr
        if "betas" in group:
            group["betas"] = (beta1, group["betas"][1])
    return lr


# --- validation --------------------------------------------------------------------------------

def _network_input(x: torch.Tensor, stage: Stage, resize: str, batch_class: np.ndarray,
                   generator: torch.Generator, mine: slice) -> torch.Tensor:
    """The stage's augmentation of this process's uint8 share ``x`` = batch[``mine``] (64x64) ->
    float (n, 1, 32, 32): the balanced chain, or the recipe's plain resize with HardNet+'s
    flip/transpose or HyNet's rot90/flipud per class, or the plain resize alone."""
    if stage.augment == "affine":
        return aug.augment(x, batch_class, generator, aug.AugmentParams(), select=mine)
    x = aug.eval_patches(x, resize=resize)
    if stage.augment == "flip":
        return aug.flip_transpose(x, batch_class, generator, select=mine)
    if stage.augment == "rot90_flipud":
        return aug.hynet_orientation(x, batch_class, generator, select=mine)
    return x


@torch.no_grad()
def describe(net: nn.Module, patches: np.ndarray, device: torch.device,
             resize: str = "pil") -> torch.Tensor:
    """Eval-mode descriptors of uint8 (M, 64, 64) patches, resized 64->32 with ``resize`` (the
    recipe's); train mode is restored."""
    was_training = net.training
    net.eval()
    out = []
    for i in range(0, len(patches), EVAL_CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(patches[i:i + EVAL_CHUNK])).to(device)
        out.append(net(aug.eval_patches(chunk, resize=resize)).float().cpu())
    net.train(was_training)
    return torch.cat(out)


def validation_fpr95(net: nn.Module, patches: np.ndarray, pairs: np.ndarray,
                     device: torch.device, resize: str = "pil") -> float:
    from descbench.evaluate.fpr95 import fpr95

    desc = describe(net, patches, device, resize)
    dist = (desc[pairs[:, 0]] - desc[pairs[:, 1]]).norm(dim=1).numpy()
    return float(fpr95(dist, pairs[:, 2].astype(bool)))


# --- bookkeeping -------------------------------------------------------------------------------

def _value(x: Any) -> float:
    if x is None:
        return math.nan
    if torch.is_tensor(x):
        return float(x.detach().float().mean()) if x.numel() else math.nan
    return float(x)


def _median(x: Any) -> float:
    if x is None or (torch.is_tensor(x) and x.numel() == 0):
        return math.nan
    return float(x.detach().float().median())


def _hist(x: Any) -> np.ndarray:
    if x is None:
        return np.zeros(HIST_BINS, np.int64)
    v = np.clip(x.detach().float().cpu().numpy().ravel(), HIST_EDGES[0], HIST_EDGES[-1])
    return np.histogram(v, bins=HIST_EDGES)[0]


def _metrics_csv(rows: list[list[float]], val_classes: str) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(METRIC_COLUMNS)
    for row in rows:
        writer.writerow([
            "" if (isinstance(v, float) and math.isnan(v)) else
            (int(v) if i < 2 else f"{v:.8g}") for i, v in enumerate(row)]
            + ["" if math.isnan(row[-1]) else val_classes])
    return buf.getvalue()


def _write_outputs(out_dir: Path, rows: list[list[float]], diag: dict[str, list],
                   val_classes: str) -> None:
    write_text(out_dir / "metrics.csv", _metrics_csv(rows, val_classes))
    hists = {f"hist_{k}": np.asarray(diag[k], np.int64).reshape(-1, HIST_BINS) for k in ("a", "b", "w")}
    with atomic_path(out_dir / "diagnostics.npz", suffix=".npz") as tmp:
        np.savez(tmp, steps=np.asarray(diag["steps"], np.int64), bin_edges=HIST_EDGES, **hists)


def _stage_of(recipe: TrainRecipe, step: int) -> tuple[int, int, int]:
    """(stage index, step within the stage, global epoch) of global step ``step``."""
    epoch0 = 0
    for i, stage in enumerate(recipe.stages):
        if step < stage.total_steps:
            return i, step, epoch0 + step // stage.steps_per_epoch
        step -= stage.total_steps
        epoch0 += stage.epochs
    raise IndexError(step)


def _sha256_tensors(state: dict[str, torch.Tensor]) -> str:
    """Digest of a state dict's names and raw bytes (the start weights of a continued run)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def run_identity(recipe: TrainRecipe, seed: int, labels: np.ndarray,
                 init_state: dict[str, torch.Tensor] | None, threads: int,
                 extra: dict[str, str] | None = None) -> dict[str, str]:
    """What a checkpoint must share with the run that resumes it: recipe, seed, the training labels
    (their digest: hashing the patches would read GBs), the start weights, the intra-op thread
    count, and ``extra`` (the caller's names for them, e.g. the train set and the ``--init-from``
    file's SHA-256)."""
    labels = np.ascontiguousarray(labels)
    identity = {
        "recipe": repr(recipe.to_json()),
        "seed": str(seed),
        "train labels": f"{len(labels)} labels, sha256 {hashlib.sha256(labels.tobytes()).hexdigest()}",
        "start weights": "random (seeded)" if init_state is None
        else f"sha256 {_sha256_tensors(init_state)}",
        "threads": str(threads),
    }
    identity.update(extra or {})
    return identity


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with a SHA-256 of its serialised bytes, so a damaged file is refused on
    resume instead of resuming into different weights. The file stays a ``weights_only`` torch file."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    wrapped = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
               "sha256": hashlib.sha256(data).hexdigest(),
               "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8)}
    with atomic_path(path, need_bytes=len(data) + (1 << 20)) as tmp:
        torch.save(wrapped, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The payload of a checkpoint written by ``save_checkpoint``; any damage is a clear error."""
    fix = "remove it to start the run over, or train into another --out directory"
    try:
        wrapped = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, empty, not a torch file, or a pickle payload
        raise DescbenchError(f"{path} is not a readable checkpoint ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else 'damaged'}); {fix}") from exc
    if not isinstance(wrapped, dict) or wrapped.get("format") != CHECKPOINT_FORMAT:
        raise DescbenchError(f"{path} is not a descbench training checkpoint; {fix}")
    if wrapped.get("version") != CHECKPOINT_VERSION:
        raise DescbenchError(f"{path} has checkpoint format {wrapped.get('version')!r}, this descbench "
                             f"writes {CHECKPOINT_VERSION}; {fix}")
    data = wrapped.get("payload")
    if not torch.is_tensor(data) or data.dtype != torch.uint8 or data.dim() != 1:
        raise DescbenchError(f"{path} holds no checkpoint payload; {fix}")
    raw = data.numpy().tobytes()
    if hashlib.sha256(raw).hexdigest() != wrapped.get("sha256"):
        raise DescbenchError(f"{path} is damaged: its payload does not match its SHA-256; {fix}")
    payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    missing = [k for k in CHECKPOINT_KEYS if k not in payload]
    if missing:
        raise DescbenchError(f"{path} lacks {', '.join(missing)}; {fix}")
    return payload


CHECKPOINT_KEYS = ("identity", "step", "model", "optimizer", "optimizer_stage", "torch_rng",
                   "cuda_rng", "augment_rng", "rows", "diagnostics", "val_before")


def _check_same_run(ckpt_path: Path, stored: dict[str, str], current: dict[str, str]) -> None:
    differ = [key for key in sorted(set(stored) | set(current)) if stored.get(key) != current.get(key)]
    if differ:
        details = "; ".join(f"{key}: checkpoint {_abbrev(stored.get(key))}, this run "
                            f"{_abbrev(current.get(key))}" for key in differ)
        raise DescbenchError(f"{ckpt_path} belongs to a different run ({details}); resume with the "
                             "same settings, or remove it / train into another --out directory")


def _abbrev(value: str | None, limit: int = 80) -> str:
    if value is None:
        return "(not recorded)"
    return value if len(value) <= limit else value[:limit - 3] + "..."


def _read(patches: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``patches[idx]`` read in sorted order (kinder to a memory map), returned in ``idx`` order."""
    order = np.argsort(idx, kind="stable")
    out = np.empty((len(idx),) + patches.shape[1:], np.uint8)
    out[order] = patches[idx[order]]
    return out


class StopTraining(Exception):
    """Raised by ``train(stop_after=k)`` after step k: a deliberate interruption (tests, benchmarks)."""


# --- the loop ----------------------------------------------------------------------------------

def train(recipe: TrainRecipe, network_factory: Callable[[], nn.Module], patches: np.ndarray,
          labels: np.ndarray, out_dir: str | os.PathLike, seed: int, device: str = "auto",
          init_state: dict[str, torch.Tensor] | None = None, resume: bool = False,
          checkpoint_every: int = 500, diagnostics_every: int | None = None,
          stop_after: int | None = None, progress: bool = True,
          identity: dict[str, str] | None = None, threads: int = 1) -> TrainResult:
    """Train ``network_factory()`` on the training set (patches uint8 (N,64,64), labels (N,)).

    Writes ``out_dir``/{metrics.csv, diagnostics.npz, checkpoint.pt}; returns the final weights (the
    last step of the fixed schedule) and the validation FPR95 before and after training. Under
    torchrun it joins (and finally leaves) the process group; only rank 0 writes files. ``resume``
    refuses a checkpoint whose ``run_identity`` (``identity`` adds the caller's entries) differs.
    ``threads`` is torch's intra-op thread count for the run (restored afterwards): float32 kernels
    sum in a thread-dependent order, so it is part of the run's identity. Rank 0 reports progress
    (``descbench.progress``): a bar on a terminal when ``progress``, otherwise INFO lines with the
    step, the mean loss since the last line, lr, steps/s and ETA (``LOG_EVERY_PERCENT`` /
    ``LOG_EVERY_SECONDS``), and the validation FPR95 at every evaluation either way.
    """
    if threads < 1:
        raise DescbenchError(f"threads={threads}: a training run needs at least 1 intra-op thread")
    recipe = recipe.for_train_set(len(patches))
    dev = resolve_device(device)
    joined = init_distributed(dev)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(recipe, network_factory, patches, labels, Path(out_dir), seed, dev, init_state,
                      resume, checkpoint_every, diagnostics_every, stop_after, progress,
                      run_identity(recipe, seed, labels, init_state, threads, identity))
    finally:
        torch.set_num_threads(previous_threads)
        if joined:
            torch.distributed.destroy_process_group()


@dataclass
class _Validation:
    """The validation patches (sorted, contiguous) and pairs re-indexed into them."""

    patches: np.ndarray
    pairs: np.ndarray
    classes: str  # VAL_CLASSES entry: what the pairs are drawn from

    @classmethod
    def of(cls, patches: np.ndarray, split: Any) -> "_Validation":
        order = np.sort(split.val_patches)
        pos = np.searchsorted(order, split.val_patches)
        pairs = np.column_stack([pos[split.pairs[:, 0]], pos[split.pairs[:, 1]], split.pairs[:, 2]])
        return cls(np.ascontiguousarray(patches[order]), pairs, VAL_CLASSES[split.held_out])


@dataclass
class _Record:
    """What a run has produced so far besides weights: its step, metrics rows and diagnostics."""

    step: int = 0
    rows: list = field(default_factory=list)
    diag: dict = field(default_factory=lambda: {"steps": [], "a": [], "b": [], "w": []})
    val_before: float = math.nan

    def add(self, step: int, epoch: int, lr: float, out: Any, val: float, histogram: bool) -> None:
        self.rows.append([step, epoch, float(out.loss.detach()), lr, _median(out.a), _median(out.b),
                          _value(out.bound), _value(out.w), _value(out.masked_fraction), val])
        if histogram:
            self.diag["steps"].append(step)
            for key in ("a", "b", "w"):
                self.diag[key].extend(_hist(getattr(out, key)).tolist())


class _Run:
    """One training run's moving parts; ``_train`` drives it stage by stage and step by step."""

    def __init__(self, recipe: TrainRecipe, net: nn.Module, patches: np.ndarray, index: ClassIndex,
                 split: Any, seed: int, dev: torch.device, generator: torch.Generator,
                 ckpt_path: Path, identity: dict[str, str]) -> None:
        self.recipe, self.net, self.patches, self.index, self.split = recipe, net, patches, index, split
        self.seed, self.dev, self.generator = seed, dev, generator
        self.ckpt_path, self.identity = ckpt_path, identity
        self.rank, self.world = _dist()
        self.record = _Record()
        self.optimiser: torch.optim.Optimizer | None = None
        self.stage_idx = -1
        self.sampler: BatchSampler | RaggedBatchSampler | None = None
        self.loss_fn: Callable | None = None
        self._opt_state, self._opt_stage = None, -1  # a resumed optimiser, loaded on entering its stage

    def restore(self) -> None:
        """Continue from ``checkpoint.pt``: weights, record, optimiser and every generator state."""
        ck = load_checkpoint(self.ckpt_path)
        _check_same_run(self.ckpt_path, ck["identity"], self.identity)
        self.net.load_state_dict(ck["model"])
        self.record = _Record(ck["step"], ck["rows"], ck["diagnostics"], ck["val_before"])
        self._opt_state, self._opt_stage = ck["optimizer"], ck["optimizer_stage"]
        if len(ck["torch_rng"]) != self.world:
            raise DescbenchError(f"{self.ckpt_path} was written by {len(ck['torch_rng'])} processes; "
                                 f"resume it with the same number (not {self.world})")
        torch.set_rng_state(ck["torch_rng"][self.rank])
        if self.dev.type == "cuda" and ck["cuda_rng"][self.rank] is not None:
            torch.cuda.set_rng_state(ck["cuda_rng"][self.rank], self.dev)
        self.generator.set_state(ck["augment_rng"])

    def enter_stage(self, s_idx: int) -> None:
        """A fresh optimiser (or the resumed one), the stage's loss and its batch sampler."""
        stage = self.recipe.stages[s_idx]
        self.stage_idx = s_idx
        self.optimiser = build_optimiser(stage, self.net)
        if self._opt_state is not None and self._opt_stage == s_idx:
            self.optimiser.load_state_dict(self._opt_state)
        self._opt_state = None
        self.loss_fn = stage.build_loss()
        if stage.sampler == "ragged":
            self.sampler = RaggedBatchSampler(self.index, self.split.training_classes(include_single=True),
                                              stage.n_classes, stage.n_per_class, self.seed)
        else:
            self.sampler = BatchSampler(self.index, self.split.train_classes, stage.n_classes,
                                        stage.n_per_class, self.seed)

    def step(self, stage: Stage, s_step: int, epoch: int) -> tuple[Any, float]:
        """One optimiser step on the stage's batch for (epoch, step): returns the loss output and lr."""
        net, world = self.net, self.world
        lr = _set_schedule(self.optimiser, stage, s_step)
        idx, batch_labels = self.sampler.batch(epoch, s_step % stage.steps_per_epoch)
        batch_class = class_of(batch_labels)
        n_classes = stage.classes_at(s_step)
        if n_classes < stage.n_classes:  # an epoch's partial last batch: its first classes
            keep = batch_class < n_classes
            idx, batch_labels, batch_class = idx[keep], batch_labels[keep], batch_class[keep]
        # each process takes a contiguous run of whole classes (shares may differ in size)
        bounds = np.searchsorted(batch_class, [r * n_classes // world for r in range(world + 1)])
        sizes = np.diff(bounds).tolist()
        mine = slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))
        x_local = _network_input(torch.from_numpy(_read(self.patches, idx[mine])).to(self.dev), stage,
                                 self.recipe.resize, batch_class, self.generator, mine)
        y = torch.from_numpy(batch_labels).to(self.dev)

        teacher_desc = None
        if stage.teacher:
            # the self-teacher runs first, as in Self-TNet: eval mode sees BatchNorm running
            # statistics from before this batch
            net.eval()
            with torch.no_grad():
                teacher_local = net(x_local)
            net.train()
            teacher_desc = _gather_no_grad(teacher_local, sizes) if world > 1 else teacher_local

        raw = None
        if stage.raw_desc:
            desc_local, raw_local = net(x_local, return_raw=True)
            raw = _gather_with_grad(raw_local, sizes) if world > 1 else raw_local
        else:
            desc_local = net(x_local)
        desc = _gather_with_grad(desc_local, sizes) if world > 1 else desc_local

        out = self.loss_fn(desc, y, LossContext(
            teacher=(lambda: teacher_desc) if teacher_desc is not None else None, raw_desc=raw))
        self.optimiser.zero_grad(set_to_none=True)
        out.loss.backward()
        if world > 1:
            _average_gradients(net, world)
        self.optimiser.step()
        self.record.step += 1
        return out, lr

    def checkpoint(self, out_dir: Path, val_classes: str) -> None:
        """Save ``checkpoint.pt`` and rewrite metrics.csv / diagnostics.npz (rank 0; every rank's RNG)."""
        torch_rng = [torch.get_rng_state()]
        cuda_rng = [torch.cuda.get_rng_state(self.dev) if self.dev.type == "cuda" else None]
        if self.world > 1:
            torch_rng, cuda_rng = _gather_objects(torch_rng[0]), _gather_objects(cuda_rng[0])
        if self.rank != 0:
            return
        rec = self.record
        payload = {
            "version": CHECKPOINT_VERSION, "identity": self.identity,
            "step": rec.step, "model": self.net.state_dict(),
            "optimizer": self.optimiser.state_dict() if self.optimiser is not None else None,
            "optimizer_stage": self.stage_idx, "scheduler": {"stage": self.stage_idx, "step": rec.step},
            "torch_rng": torch_rng, "cuda_rng": cuda_rng,
            "augment_rng": self.generator.get_state(), "rows": rec.rows, "diagnostics": rec.diag,
            "val_before": rec.val_before,
        }
        save_checkpoint(self.ckpt_path, payload)
        _write_outputs(out_dir, rec.rows, rec.diag, val_classes)


class _Reporter:
    """Rank 0's progress: a bar on a terminal (unless ``progress`` is False), otherwise a log line every
    LOG_EVERY_PERCENT of the steps or LOG_EVERY_SECONDS, whichever first, with the mean loss since the
    last line; the validation FPR95 is logged at every evaluation either way."""

    def __init__(self, total: int, record: _Record, progress: bool) -> None:
        self.total, self.record = total, record
        if record.step == 0:
            log.info("train: step 0/%d: validation FPR95 %.4f (%.2f %%) before training", total,
                     record.val_before, 100 * record.val_before)
        self.bar = progress_of(total=total, initial=record.step, desc="train", unit="step", logger=log,
                               every_percent=LOG_EVERY_PERCENT, every_seconds=LOG_EVERY_SECONDS,
                               min_interval=0.0, bar=None if progress else False, dynamic_ncols=True)
        self.loss_sum, self.loss_steps = 0.0, 0

    def stepped(self, stage: Stage, epoch: int, lr: float) -> None:
        row = self.record.rows[-1]
        if not math.isnan(row[-1]):  # this step ended an epoch: rank 0 validated
            log.info("train: step %d/%d (stage %s, epoch %d): validation FPR95 %.4f (%.2f %%)",
                     row[0], self.total, stage.name, epoch, row[-1], 100 * row[-1])
        self.loss_sum, self.loss_steps = self.loss_sum + row[2], self.loss_steps + 1
        shown = self.loss_sum / self.loss_steps if self.bar.logs else row[2]
        self.bar.set_postfix(loss=f"{shown:.4f}", lr=f"{lr:.3g}", stage=stage.name)
        if self.bar.update(1):
            self.loss_sum, self.loss_steps = 0.0, 0

    def close(self) -> None:
        self.bar.close()


def _train(recipe: TrainRecipe, network_factory: Callable[[], nn.Module], patches: np.ndarray,
           labels: np.ndarray, out_dir: Path, seed: int, dev: torch.device,
           init_state: dict[str, torch.Tensor] | None, resume: bool, checkpoint_every: int,
           diagnostics_every: int | None, stop_after: int | None, progress: bool,
           identity: dict[str, str]) -> TrainResult:
    rank, world = _dist()
    ckpt_path = out_dir / "checkpoint.pt"
    total = recipe.total_steps
    diagnostics_every = diagnostics_every or max(1, total // 2000)

    index = ClassIndex.from_labels(labels)
    split = split_validation(index, hold_out=recipe.hold_out)
    val = _Validation.of(patches, split)
    for stage in recipe.stages:
        if min(stage.n_classes, stage.last_batch_classes or stage.n_classes) < world:
            raise DescbenchError(f"stage {stage.name!r}: K={stage.n_classes} classes do not split "
                                 f"over {world} processes; use at most K processes")
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        net = network_factory()
        if init_state is not None:
            net.load_state_dict(init_state)
        net.to(dev).train()
        if world > 1:
            _sync_batchnorm(net)
            torch.manual_seed(seed * 1000 + rank)  # same initial weights, own dropout masks per rank
        run = _Run(recipe, net, patches, index, split, seed, dev, torch.Generator().manual_seed(seed + 1),
                   ckpt_path, identity)
        rec = run.record
        if resume and ckpt_path.is_file():
            run.restore()
            rec = run.record
            log.info("resumed %s at step %d of %d", ckpt_path, rec.step, total)
        elif resume:
            log.info("no checkpoint in %s; starting from step 0", out_dir)
        if rec.step == 0:
            rec.val_before = validation_fpr95(net, val.patches, val.pairs, dev, recipe.resize)
            rec.rows = [[0, 0] + [math.nan] * 7 + [rec.val_before]]

        started = time.perf_counter()
        reporter = _Reporter(total, rec, progress) if rank == 0 else None
        start_step = rec.step
        while rec.step < total:
            s_idx, s_step, epoch = _stage_of(recipe, rec.step)
            stage = recipe.stages[s_idx]
            if s_idx != run.stage_idx:
                run.enter_stage(s_idx)
            out, lr = run.step(stage, s_step, epoch)
            step = rec.step

            epoch_end = s_step + 1 == stage.total_steps or (s_step + 1) % stage.steps_per_epoch == 0
            fpr = (validation_fpr95(net, val.patches, val.pairs, dev, recipe.resize)
                   if epoch_end and rank == 0 else math.nan)
            rec.add(step, epoch + 1, lr, out, fpr, step % diagnostics_every == 0 or step == total)
            if reporter is not None:
                reporter.stepped(stage, epoch + 1, lr)
            if step % checkpoint_every == 0 or step == total:
                run.checkpoint(out_dir, val.classes)
            if stop_after is not None and step >= stop_after and step < total:
                if reporter is not None:
                    reporter.close()
                raise StopTraining(f"stopped after step {step}")
        if reporter is not None:
            reporter.close()
        if rank == 0 and rec.step == start_step:
            # resumed from the final checkpoint (killed before the workflow removed it, which also
            # removed the unfinished job's outputs): write metrics.csv and diagnostics.npz again
            _write_outputs(out_dir, rec.rows, rec.diag, val.classes)
        if world > 1:
            for module in net.modules():
                if type(module) is _GlobalBatchNorm2d:
                    module.__class__ = nn.BatchNorm2d
        final = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        val_after = next((r[-1] for r in reversed(rec.rows) if not math.isnan(r[-1])), math.nan)
    return TrainResult(final, rec.val_before, val_after, rec.step, time.perf_counter() - started, rank,
                       world)
