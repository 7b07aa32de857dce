"""Where a training step's time goes, at the mini and the paper batch shape, and batched vs per-patch
augmentation.

A step is split into: data (sampler + reading the uint8 patches) + augmentation, network forward and
backward, the self-teacher's forward (methods whose loss uses it), mining + loss, and the optimiser
step. "non-net %" is everything but the network passes (data + augmentation + mining/loss +
optimiser) as a share of the step; the target is <= 15 % at the paper shape.

The augmentation comparison runs the same chain per patch with PIL, as the reference pipeline does
(Pad(3, edge) -> RandomAffine(5 deg, scale 1-1.14, shear 5, bicubic) -> RandomResizedCrop(32, 0.9-1.0,
0.9-1.1, bilinear) -> [0, 1] floats -> class-wise transpose/flip), against ``augment.augment`` on the
whole batch; target >= 20x. The training data are random patches (timing does not depend on them).

    python benchmarks/train_throughput.py                     # mini and paper shape, CPU (+ GPU)
    python benchmarks/train_throughput.py --shapes mini --reps 5
    python benchmarks/train_throughput.py --augmentation-only --threads 1   # single-core comparison
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from PIL import Image
from tabulate import tabulate

from descbench import registry
from descbench.train import augment as aug
from descbench.train.loop import _read, build_optimiser
from descbench.train.losses import LossContext
from descbench.train.sampler import BatchSampler, ClassIndex

PATCHES_PER_CLASS = 4


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Accumulates wall time per named phase (device-synchronised)."""

    def __init__(self, device: torch.device):
        self.device, self.times = device, {}

    def phase(self, name: str):
        clock = self

        class _Phase:
            def __enter__(self):
                _sync(clock.device)
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                _sync(clock.device)
                clock.times[name] = clock.times.get(name, 0.0) + time.perf_counter() - self.t

        return _Phase()


def time_steps(method: str, scale: str, device: torch.device, reps: int, warmup: int,
               seed: int = 0) -> dict:
    """Mean seconds per phase of one training step of ``method``'s first stage at ``scale``."""
    desc = registry.get(method)
    stage = desc.recipe.scale(scale).stages[0]
    n_classes = max(stage.n_classes * 2, 64)
    labels = np.repeat(np.arange(n_classes), PATCHES_PER_CLASS)
    patches = np.random.default_rng(seed).integers(0, 256, (len(labels), 64, 64), dtype=np.uint8)
    index = ClassIndex.from_labels(labels)
    sampler = BatchSampler(index, np.arange(n_classes), stage.n_classes, stage.n_per_class, seed)
    torch.manual_seed(seed)
    net = desc.network().to(device).train()
    optimiser = build_optimiser(stage, net)
    loss_fn = stage.build_loss()
    generator = torch.Generator().manual_seed(seed)
    clock = Clock(device)
    for rep in range(warmup + reps):  # warm-up steps (allocations, kernels) are not counted
        if rep == warmup:
            clock.times.clear()
        with clock.phase("data+aug"):
            idx, batch_labels = sampler.batch(0, rep)
            x = torch.from_numpy(_read(patches, idx)).to(device)
            if stage.augment == "none":
                x = aug.eval_patches(x)
            else:
                params = aug.AugmentParams() if stage.augment == "affine" else aug.FLIP_ONLY
                x = aug.augment(x, stage.n_per_class, generator, params)
            y = torch.from_numpy(batch_labels).to(device)
        with clock.phase("forward"):
            if stage.raw_desc:
                d, raw = net(x, return_raw=True)
            else:
                d, raw = net(x), None
        teacher_out = None
        if stage.teacher:
            with clock.phase("teacher"):
                net.eval()
                with torch.no_grad():
                    teacher_out = net(x)
                net.train()
        with clock.phase("mining+loss"):
            out = loss_fn(d, y, LossContext(teacher=(lambda: teacher_out) if stage.teacher else None,
                                            raw_desc=raw))
        with clock.phase("backward"):
            optimiser.zero_grad(set_to_none=True)
            out.loss.backward()
        with clock.phase("optimiser"):
            optimiser.step()
    times = {k: v / reps for k, v in clock.times.items()}
    times.setdefault("teacher", 0.0)
    times["batch"] = f"{stage.n_classes}x{stage.n_per_class}"
    return times


def pil_augment(patches: np.ndarray, n_per_class: int, rng: np.random.Generator,
                p: aug.AugmentParams = aug.AugmentParams()) -> np.ndarray:
    """The reference chain, one patch at a time with PIL (what a torchvision pipeline does)."""
    out = np.empty((len(patches), 1, 32, 32), np.float32)
    flips = rng.random((len(patches) // n_per_class, 2)) < 0.5
    for i, patch in enumerate(patches):
        img = Image.fromarray(np.pad(patch, p.pad, mode="edge"))
        side = img.size[0]
        angle = math.radians(rng.uniform(-p.degrees, p.degrees))
        scale = rng.uniform(*p.scale)
        shear = math.radians(rng.uniform(-p.shear, p.shear))
        fwd = scale * np.array([[math.cos(angle), -math.cos(angle) * math.tan(shear) - math.sin(angle)],
                                [math.sin(angle), -math.sin(angle) * math.tan(shear) + math.cos(angle)]])
        inv = np.linalg.inv(fwd)
        c = (side - 1) / 2
        shift = np.array([c, c]) - inv @ np.array([c, c])
        img = img.transform(img.size, Image.AFFINE, (*inv[0], shift[0], *inv[1], shift[1]),
                            resample=Image.BICUBIC)
        area = rng.uniform(*p.crop_scale) * side * side
        ratio = math.exp(rng.uniform(math.log(p.crop_ratio[0]), math.log(p.crop_ratio[1])))
        w, h = min(side, math.sqrt(area * ratio)), min(side, math.sqrt(area / ratio))
        left, top = rng.uniform(0, side - w), rng.uniform(0, side - h)
        img = img.resize((32, 32), Image.BILINEAR, box=(left, top, left + w, top + h))
        arr = np.asarray(img, np.float32) / 255.0
        transpose, hflip = flips[i // n_per_class]
        if transpose:
            arr = arr.T
        if hflip:
            arr = arr[:, ::-1]
        out[i, 0] = arr
    return out


def time_augmentation(scale: str, device: torch.device, reps: int, max_pil: int) -> dict:
    """Microseconds per patch, best of ``reps`` (the machine may be shared): the batched chain on a
    whole batch of ``balanced-no-annealing``'s shape at ``scale``, and the PIL chain on up to
    ``max_pil`` of its patches."""
    stage = registry.get("balanced-no-annealing").recipe.scale(scale).stages[0]
    n = stage.n_classes * stage.n_per_class
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (n, 64, 64), dtype=np.uint8)
    x = torch.from_numpy(patches).to(device)
    generator = torch.Generator().manual_seed(0)
    aug.augment(x, stage.n_per_class, generator)  # warm-up
    batched = math.inf
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        aug.augment(x, stage.n_per_class, generator)
        _sync(device)
        batched = min(batched, (time.perf_counter() - t) / n)
    m = min(n, max_pil) // stage.n_per_class * stage.n_per_class
    per_patch = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        pil_augment(patches[:m], stage.n_per_class, rng)
        per_patch = min(per_patch, (time.perf_counter() - t) / m)
    return {"patches": n, "batched_us": 1e6 * batched, "pil_us": 1e6 * per_patch,
            "speedup": per_patch / batched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="mini,paper")
    parser.add_argument("--methods", default="balanced-no-annealing,balanced,hardnet")
    parser.add_argument("--reps", type=int, default=3, help="timed steps at the mini shape")
    parser.add_argument("--paper-reps", type=int, default=1, help="timed steps at the paper shape")
    parser.add_argument("--paper-warmup", type=int, default=0,
                        help="untimed steps before them (one step is minutes on a CPU)")
    parser.add_argument("--max-pil", type=int, default=2048, help="patches timed with PIL")
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--augmentation-only", action="store_true",
                        help="only the batched vs per-patch augmentation comparison")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(True)
    step_rows, aug_rows = [], []
    for dev_name in args.devices.split(","):
        device = torch.device(dev_name)
        for scale in args.shapes.split(","):
            reps = args.reps if scale == "mini" else args.paper_reps
            warmup = 1 if scale == "mini" else args.paper_warmup
            for method in ([] if args.augmentation_only else args.methods.split(",")):
                t = time_steps(method, scale, device, reps, warmup)
                net = t["forward"] + t["backward"] + t["teacher"]
                other = t["data+aug"] + t["mining+loss"] + t["optimiser"]
                total = net + other
                step_rows.append([dev_name, scale, method, t["batch"], t["data+aug"], t["forward"],
                                  t["backward"], t["teacher"], t["mining+loss"], t["optimiser"],
                                  total, 100 * other / total])
            a = time_augmentation(scale, device, max(reps, 3), args.max_pil)
            aug_rows.append([dev_name, torch.get_num_threads() if dev_name == "cpu" else "",
                             scale, a["patches"], a["batched_us"], a["pil_us"], a["speedup"]])
    if step_rows:
        print(tabulate(step_rows, floatfmt=".4g", headers=[
            "device", "shape", "method (first stage)", "K x P", "data+aug s", "forward s",
            "backward s", "teacher s", "mining+loss s", "optimiser s", "step s", "non-net %"]))
        print()
    print(tabulate(aug_rows, floatfmt=".4g", headers=[
        "device", "threads", "shape", "patches", "batched us/patch", "PIL per-patch us/patch",
        "speed-up"]))


if __name__ == "__main__":
    main()
