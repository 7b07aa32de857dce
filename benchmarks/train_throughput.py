"""Where a training step's time goes, at the mini and the paper batch shape.

A step is split into: data (sampler + reading the uint8 patches) + augmentation, network forward and
backward, the self-teacher's forward (methods whose loss uses it), mining + loss, and the optimiser
step. "non-net %" is everything but the network passes (data + augmentation + mining/loss +
optimiser) as a share of the step; the target is <= 15 % at the paper shape.

The training data are random patches (timing does not depend on them); batches come from the
method's own sampler and augmentation (``loop._network_input``). The batched augmentation against the
per-patch PIL chain is ``benchmarks/augment_speed.py``.

    python benchmarks/train_throughput.py                     # mini and paper shape, CPU (+ GPU)
    python benchmarks/train_throughput.py --shapes mini --reps 5 --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tabulate import tabulate

from descbench import registry
from descbench.train.loop import _network_input, _read, build_optimiser
from descbench.train.losses import LossContext
from descbench.train.sampler import BatchSampler, ClassIndex, RaggedBatchSampler, class_of

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
    recipe = desc.recipe.scale(scale).for_train_set(450092)  # Liberty's epoch length
    stage = recipe.stages[0]
    n_classes = max(stage.n_classes * 2, 64)
    labels = np.repeat(np.arange(n_classes), PATCHES_PER_CLASS)
    patches = np.random.default_rng(seed).integers(0, 256, (len(labels), 64, 64), dtype=np.uint8)
    index = ClassIndex.from_labels(labels)
    sampler_type = RaggedBatchSampler if stage.sampler == "ragged" else BatchSampler
    sampler = sampler_type(index, np.arange(n_classes), stage.n_classes, stage.n_per_class, seed)
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
            x = _network_input(x, stage, recipe.resize, class_of(batch_labels), generator,
                               slice(None))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="mini,paper")
    parser.add_argument("--methods", default="balanced-no-annealing,balanced,hardnet")
    parser.add_argument("--reps", type=int, default=3, help="timed steps at the mini shape")
    parser.add_argument("--paper-reps", type=int, default=1, help="timed steps at the paper shape")
    parser.add_argument("--paper-warmup", type=int, default=0,
                        help="untimed steps before them (one step is minutes on a CPU)")
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(True)
    step_rows = []
    for dev_name in args.devices.split(","):
        device = torch.device(dev_name)
        for scale in args.shapes.split(","):
            reps = args.reps if scale == "mini" else args.paper_reps
            warmup = 1 if scale == "mini" else args.paper_warmup
            for method in args.methods.split(","):
                t = time_steps(method, scale, device, reps, warmup)
                net = t["forward"] + t["backward"] + t["teacher"]
                other = t["data+aug"] + t["mining+loss"] + t["optimiser"]
                total = net + other
                step_rows.append([dev_name, scale, method, t["batch"], t["data+aug"], t["forward"],
                                  t["backward"], t["teacher"], t["mining+loss"], t["optimiser"],
                                  total, 100 * other / total])
    print(f"torch intra-op threads: {torch.get_num_threads()}")
    print(tabulate(step_rows, floatfmt=".4g", headers=[
        "device", "shape", "method (first stage)", "K x P", "data+aug s", "forward s",
        "backward s", "teacher s", "mining+loss s", "optimiser s", "step s", "non-net %"]))


if __name__ == "__main__":
    main()
