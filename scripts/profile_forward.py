"""Where a model's CPU forward spends its time: torch.profiler's operator table, grouped.

    python scripts/profile_forward.py --weights ../shared/weights/yolov5n-v6.1.pt [--img 640] [--batch 16]
        [--runs 3]

Loads the checkpoint as ``val`` and ``benchmark`` run it (fused, eval, channels-last where the blocks allow),
forwards a random batch ``--runs`` times under the profiler after one warm-up, and prints the share of self CPU
time per operator (top 15) and per group: convolution (oneDNN), elementwise activations and arithmetic, data
movement (cat, copies, upsampling, pooling), and the rest. It explains a GEMM fraction below the machine's rate
(``yolo-attn benchmark``): only the convolutions run at GEMM speed; the other groups are memory-bound.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from yolo_attn.checkpoint import load_model
from yolo_attn.engine.validator import inference_state

GROUPS = {
    "convolution": ("conv", "mkldnn"),
    "elementwise": ("silu", "sigmoid", "mul", "add", "sub", "div", "relu", "hardswish", "exp", "pow", "clamp"),
    "data movement": ("cat", "copy", "contiguous", "clone", "upsample", "max_pool", "view", "permute", "split",
                      "slice", "chunk", "empty", "fill", "zero", "as_strided", "to", "stack"),
}


def group_of(name: str) -> str:
    op = name.lower()
    return next((group for group, keys in GROUPS.items() if any(k in op for k in keys)), "other")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--img", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    model = load_model(args.weights, fuse=True).model
    images = torch.rand(args.batch, 3, args.img, args.img, generator=torch.Generator().manual_seed(0))
    with inference_state(model, half=False, channels_last=True), torch.inference_mode():
        x = images.contiguous(memory_format=torch.channels_last)
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.runs):
                model(x)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    print(f"{args.weights.name}: {args.runs} forwards of {args.batch}x3x{args.img}x{args.img} on "
          f"{torch.get_num_threads()} threads, {total / 1e3 / args.runs:.1f} ms self CPU time per forward")
    print("| operator | self CPU % | calls |\n|---|---:|---:|")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]:
        print(f"| {e.key} | {100 * e.self_cpu_time_total / total:.1f} | {e.count // args.runs} |")
    shares: dict[str, float] = collections.defaultdict(float)
    for e in events:
        shares[group_of(e.key)] += e.self_cpu_time_total / total
    print("| group | self CPU % |\n|---|---:|")
    for group, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"| {group} | {100 * share:.1f} |")


if __name__ == "__main__":
    main()
