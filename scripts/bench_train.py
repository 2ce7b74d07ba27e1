"""Training throughput: the augmented dataloader alone, then forward + loss + backward + step per model.

    python scripts/bench_train.py [--img 640] [--batch 16] [--iters 5] [--models yolov5n yolov5s] [--data coco128.yaml]

Prints images/s for each (CPU, and CUDA with AMP when present) so the bottleneck is visible.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from yolo_attn import build_model
from yolo_attn.data.augment import TrainDataset
from yolo_attn.data.config import load_dataset_config
from yolo_attn.data.dataset import create_dataloader
from yolo_attn.engine.optim import build_optimizer
from yolo_attn.losses import build_loss
from yolo_attn.losses.yolov5 import scale_loss_gains

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "coco128" / "coco128.yaml"


def dataloader_rate(data: Path, hyp: dict, img: int, batch: int, workers: int, batches: int,
                    cache: str | None = None) -> float:
    """Images/s of the mosaic-augmented train loader (after its first batch, which starts the workers), with the
    images decoded from their files or from ``--cache ram|disk`` (filled before the clock starts)."""
    dataset = TrainDataset(load_dataset_config(data).split("train"), img, batch, stride=32, hyp=hyp)
    if cache is not None:
        dataset.cache_images(cache)
        if cache == "disk":  # the .npy files are written on first read: one untimed pass makes them
            for index in range(len(dataset)):
                dataset.load_image(index)
    loader = create_dataloader(dataset, batch, workers=workers, shuffle=True)
    iterator = iter(loader)
    next(iterator)
    seen, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            images, *_ = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            images, *_ = next(iterator)
        seen += images.shape[0]
    return seen / (time.perf_counter() - start)


def train_rate(model_name: str, hyp: dict, img: int, batch: int, iters: int, device: torch.device) -> float:
    """Images/s of optimisation steps on a fixed random batch (one warm-up step not timed)."""
    model = build_model(ROOT / "configs" / "models" / f"{model_name}.yaml", nc=80).to(device).train()
    loss_fn = build_loss(model.head, scale_loss_gains(hyp, model.head.nl, 80, img), "auto")  # the head's own loss
    optimizer = build_optimizer(model, "SGD", hyp["lr0"], hyp["momentum"], hyp["weight_decay"])
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, img, img, generator=generator).to(device)
    targets = torch.rand(batch * 8, 6, generator=generator)
    targets[:, 0] = torch.arange(batch).repeat_interleave(8)
    targets[:, 1] = torch.randint(0, 80, (batch * 8,), generator=generator)
    targets[:, 4:] = targets[:, 4:] * 0.3 + 0.02
    targets = targets.to(device)

    def step() -> None:
        with torch.autocast(device_type=device.type, enabled=amp):
            loss, _ = loss_fn(model(images), targets)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iters", type=int, default=5, help="timed optimisation steps per model and device")
    parser.add_argument("--loader-batches", type=int, default=8)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--models", nargs="*", default=["yolov5n", "yolov5s"])
    parser.add_argument("--cache", nargs="+", choices=("none", "ram", "disk"), default=["none"],
                        help="loader image sources to compare (train --cache)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--hyp", type=Path, default=ROOT / "configs" / "hyps" / "hyp.scratch-low.yaml")
    args = parser.parse_args()
    hyp = yaml.safe_load(args.hyp.read_text())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, img {args.img}, batch {args.batch}")
    for cache in args.cache:
        rate = dataloader_rate(args.data, hyp, args.img, args.batch, args.workers, args.loader_batches,
                               None if cache == "none" else cache)
        print(f"dataloader (mosaic + augment, {args.workers} max workers, cache {cache}): {rate:.1f} images/s")
    devices = [torch.device("cpu")] + ([torch.device("cuda:0")] if torch.cuda.is_available() else [])
    for device in devices:
        for name in args.models:
            rate = train_rate(name, hyp, args.img, args.batch, args.iters, device)
            print(f"train {name} on {device.type}{' (AMP)' if device.type == 'cuda' else ''}: {rate:.1f} images/s")


if __name__ == "__main__":
    main()
