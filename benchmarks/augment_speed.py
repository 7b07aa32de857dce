"""Batched balanced augmentation (``augment.augment``) against the same chain run per patch by PIL.

The per-patch chain is Self-TNet's ``trans_resize32_affine`` written with PIL calls only (np.pad edge,
``Image.transform`` AFFINE with torchvision 0.5's matrix, crop, BILINEAR resize to 32, / 255,
class-wise transpose / flip), with the batched chain's parameters: torchvision's own per-call
overheads (ToPILImage, Compose, parameter drawing) are left out, so the PIL column is a lower bound on
the reference's cost. PIL runs single-threaded; the batched chain with ``--threads`` torch threads.
Times are the best of ``--reps`` runs (the machine may be shared). The last columns compare the two
outputs: share of output pixels that differ, and the largest difference in grey levels.

    python benchmarks/augment_speed.py                    # 1 thread and torch's default, CPU (+ GPU)
    python benchmarks/augment_speed.py --patches 4096 --threads 1
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from PIL import Image
from tabulate import tabulate

from descbench.train import augment as aug


def textured(n: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, 64, 64) smooth random texture with saturated areas."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.rand(n, 1, 64, 64, generator=g), 5, 1, 2,
                                       count_include_pad=False)
    return ((x[:, 0] - x.mean()) * 6 + 0.5).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


def pil_chain(patches: np.ndarray, draws: aug.AugmentDraws, p: aug.AugmentParams) -> np.ndarray:
    out = np.empty((len(patches), 1, 32, 32), np.float32)
    resample = Image.BICUBIC if p.interpolation == "bicubic" else Image.BILINEAR
    matrices = aug.inverse_affine_matrix(draws.angle, draws.scale, draws.shear,
                                         (64 + 2 * p.pad, 64 + 2 * p.pad))
    for k, patch in enumerate(patches):
        img = Image.fromarray(np.pad(patch, p.pad, mode="edge"))
        img = img.transform(img.size, Image.AFFINE, tuple(matrices[k]), resample, fillcolor=0)
        i, j, h, w = (int(v) for v in draws.crop[k])
        arr = np.asarray(img.crop((j, i, j + w, i + h)).resize((32, 32), Image.BILINEAR),
                         np.float32) / 255.0
        c = draws.class_of[k]
        if draws.transpose[c]:
            arr = arr.T
        if draws.hflip[c]:
            arr = arr[:, ::-1]
        out[k, 0] = arr
    return out


def best_of(fn, reps: int, sync=lambda: None) -> float:
    fn()
    sync()
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=1024)
    parser.add_argument("--pil-patches", type=int, default=512, help="patches timed with PIL")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", default=f"1,{torch.get_num_threads()}",
                        help="torch CPU thread counts to time")
    args = parser.parse_args()
    patches = textured(args.patches)
    class_of = np.repeat(np.arange(args.patches // 2 + 1), 2)[:args.patches]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    default_threads = torch.get_num_threads()
    for interpolation in aug.INTERPOLATIONS:
        p = aug.AugmentParams(interpolation=interpolation)
        draws = aug.sample_params(class_of, (64, 64), torch.Generator().manual_seed(0), p)
        m = min(args.pil_patches, args.patches)
        pil_s = best_of(lambda: pil_chain(patches[:m], draws.rows(slice(0, m)), p),
                        max(1, args.reps // 2)) / m
        reference = pil_chain(patches, draws, p)
        for device in devices:
            x = torch.from_numpy(patches).to(device)
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            for threads in (sorted({int(t) for t in args.threads.split(",")})
                            if device == "cpu" else [default_threads]):
                torch.set_num_threads(threads)
                batched_s = best_of(
                    lambda: aug.augment(x, class_of, torch.Generator().manual_seed(0), p),
                    args.reps, sync) / args.patches
                out = aug.augment(x, class_of, torch.Generator().manual_seed(0), p).cpu().numpy()
                levels = np.abs(out.astype(np.float64) - reference) * 255
                rows.append([interpolation, device, threads if device == "cpu" else "",
                             args.patches, 1e6 * batched_s, 1e6 * pil_s, pil_s / batched_s,
                             f"{(levels > 0.5).mean():.1e}", round(float(levels.max()), 3)])
    torch.set_num_threads(default_threads)
    print(tabulate(rows, floatfmt=".4g", headers=[
        "affine filter", "device", "threads", "patches", "batched us/patch",
        "PIL per-patch us/patch", "speed-up", "differing pixels", "max diff (levels)"]))


if __name__ == "__main__":
    main()
