"""``yolo-attn train``: train a YAML-defined detector (YOLOv5's ``train.py`` recipe, Jocher et al. 2020).

SGD/AdamW in three parameter groups, warm-up, linear or cosine LR, a nominal batch (hyp ``nbs``,
default 64) through gradient accumulation, EMA weights validated every epoch, AMP on CUDA, early
stopping, atomic ``last.pt`` / ``best.pt``, exact resume, DDP through torchrun. Without ``--data`` it
trains the built-in synthetic demo set (generated once into the cache folder): yolov5n from scratch
at 320 px, AdamW, 12 epochs (``configs/hyps/hyp.demo.yaml``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from yolo_attn.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from yolo_attn.data import synthetic
from yolo_attn.data.augment import TrainDataset
from yolo_attn.data.config import load_dataset_config
from yolo_attn.data.dataset import create_dataloader
from yolo_attn.engine import results
from yolo_attn.engine.autoanchor import check_anchors
from yolo_attn.engine.distributed import broadcast_object, cleanup, init_distributed, wrap_model
from yolo_attn.engine.optim import (
    NOMINAL_BATCH_SIZE, EarlyStopping, ModelEMA, accumulation_steps, apply_warmup, build_optimizer, fitness, lr_lambda,
    warmup_iterations,
)
from yolo_attn.engine.val import evaluate
from yolo_attn.errors import UserError
from yolo_attn.losses import build_loss, loss_names
from yolo_attn.losses.yolov5 import scale_loss_gains
from yolo_attn.nn.builder import build_model
from yolo_attn.nn.heads import head_contract
from yolo_attn.utils.paths import add_run_dir_arguments, increment_path
from yolo_attn.utils.yaml_io import read_yaml_mapping

PACKAGE_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_HYP, DEFAULT_OPTIMIZER = "hyp.scratch-low.yaml", "SGD"
# The demo: yolov5n from scratch at 320 px, AdamW with a nominal batch of 16 (see configs/hyps/hyp.demo.yaml).
DEMO_MODEL, DEMO_IMG_SIZE, DEMO_EPOCHS, DEMO_HYP, DEMO_OPTIMIZER = "yolov5n.yaml", 320, 12, "hyp.demo.yaml", "AdamW"
RESULTS_CSV = "results.csv"
LOSS_NAMES = ("box", "obj", "cls")
METRIC_COLUMNS = (
    ("precision", "metrics/precision"), ("recall", "metrics/recall"),
    ("map50", "metrics/mAP_0.5"), ("map50_95", "metrics/mAP_0.5:0.95"),
)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cfg", help="model YAML (with --weights: build this and transfer matching weights)")
    p.add_argument("--weights", help="initial weights: our checkpoint or an upstream YOLOv5/YOLOv7 .pt")
    p.add_argument("--data", help="dataset YAML (default: the built-in synthetic demo set)")
    p.add_argument("--hyp", help=f"hyperparameter YAML (default configs/hyps/{DEFAULT_HYP}; demo {DEMO_HYP})")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs (default 100; demo {DEMO_EPOCHS})")
    p.add_argument("--batch", "--batch-size", dest="batch", type=int, default=16, help="total batch size over all processes")
    p.add_argument("--img", "--img-size", dest="img", type=int, default=None, help=f"train/val image size (default 640; demo {DEMO_IMG_SIZE})")
    p.add_argument("--device", default="", help="cpu, 0 or 0,1 (several GPUs through torchrun)")
    p.add_argument("--workers", type=int, default=8, help="max dataloader workers per process")
    p.add_argument("--optimizer", choices=("SGD", "Adam", "AdamW"), default=None, help=f"default {DEFAULT_OPTIMIZER}; demo {DEMO_OPTIMIZER}")
    p.add_argument("--cos-lr", action="store_true", help="cosine LR schedule (default linear)")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--patience", type=int, default=100, help="early stopping: epochs without improvement")
    p.add_argument("--close-mosaic", type=int, default=0, help="train the last N epochs without mosaic")
    p.add_argument("--loss", choices=("auto", *loss_names()), default="auto", help="auto: the head's own default loss")
    p.add_argument("--rect", action="store_true", help="rectangular training batches (no mosaic)")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm in DDP")
    p.add_argument("--noval", action="store_true", help="validate only after the final epoch")
    p.add_argument("--nosave", action="store_true", help="save only the final checkpoint")
    p.add_argument("--noautoanchor", action="store_true", help="skip the AutoAnchor check")
    p.add_argument("--noplots", action="store_true", help="no label/batch/results plots")
    p.add_argument("--resume", nargs="?", const=True, default=False, help="resume the latest (or the given) last.pt")
    add_run_dir_arguments(p, "runs/train")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="end with one JSON line of the final metrics")


def run_cli(args: argparse.Namespace) -> int:
    summary = Trainer(args).run()
    if args.json and summary is not None:
        print(json.dumps(summary))
    return 0


def default_options(**options: Any) -> argparse.Namespace:
    """The CLI's defaults with ``options`` (same names as the flags, ``_`` for ``-``) applied."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args([])
    unknown = set(options) - set(vars(args))
    if unknown:
        raise TypeError(f"unknown train options: {', '.join(sorted(unknown))}")
    vars(args).update(options)
    return args


def train(**options: Any) -> dict[str, Any]:
    """Library entry: ``train(cfg=..., data=..., epochs=...)`` with the CLI's option names; returns the summary."""
    return Trainer(default_options(**options)).run()


@dataclass
class EpochRecord:
    """What one epoch logs to results.csv."""

    epoch: int
    losses: list[float]
    metrics: dict[str, Any]
    lrs: list[float]

    def row(self) -> dict[str, float]:
        val_losses = self.metrics.get("loss")
        val_losses = [float(v) for v in val_losses] if val_losses is not None else [0.0, 0.0, 0.0]
        row: dict[str, float] = {"epoch": self.epoch}
        row.update({f"train/{name}_loss": value for name, value in zip(LOSS_NAMES, self.losses)})
        row.update({column: float(self.metrics.get(key, 0.0)) for key, column in METRIC_COLUMNS})
        row.update({f"val/{name}_loss": value for name, value in zip(LOSS_NAMES, val_losses)})
        row.update({f"x/lr{i}": lr for i, lr in enumerate(self.lrs)})
        return row


def option_values(args: argparse.Namespace) -> dict[str, Any]:
    """The run's options as plain values (drops what the CLI attached, such as the command's function)."""
    return {k: v for k, v in vars(args).items() if v is None or isinstance(v, (str, int, float, bool))}


def latest_last_checkpoint(project: Path) -> Path:
    candidates = sorted(project.glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise UserError(f"--resume: no */weights/last.pt under {project}; give the checkpoint path")
    return candidates[-1]


def transfer_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], exclude: tuple[str, ...] = ()) -> int:
    """Load every tensor whose key and shape match (and whose key contains none of ``exclude``); returns the count."""
    own = model.state_dict()
    matched = {
        k: v for k, v in state_dict.items()
        if k in own and v.shape == own[k].shape and not any(x in k for x in exclude)
    }
    model.load_state_dict(matched, strict=False)
    return len(matched)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain values (for exact resume)."""
    version, state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": [version, list(state), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_state(states: dict[str, Any]) -> None:
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """One training run (one process of it under DDP). :meth:`run` returns the summary dict."""

    def __init__(self, args: argparse.Namespace):
        self.resume_checkpoint: dict[str, Any] | None = None
        if args.resume:
            args = self.resume_arguments(args)
        self.args = args
        self.context = init_distributed(args.device)
        self.device = self.context.device
        self.is_main = self.context.is_main
        self.demo = not args.data

    # -- set-up -------------------------------------------------------------------------------

    def resume_arguments(self, args: argparse.Namespace) -> argparse.Namespace:
        """The options of the run being resumed, with its checkpoint remembered."""
        path = Path(args.resume) if isinstance(args.resume, str) else latest_last_checkpoint(Path(args.project))
        checkpoint = load_checkpoint(path)
        saved = checkpoint.get("train_args")
        if not saved or checkpoint.get("optimizer") is None:
            raise UserError(f"{path}: has no training state to resume (it is a final or an upstream checkpoint)")
        resumed = argparse.Namespace(**{**vars(args), **saved})
        resumed.resume, resumed.json, resumed.device = str(path), args.json, args.device or saved.get("device", "")
        resumed.save_dir = str(path.parent.parent)
        self.resume_checkpoint = checkpoint
        return resumed

    def log(self, message: str) -> None:
        if self.is_main:
            print(message, flush=True)

    def setup(self) -> None:
        args = self.args
        if self.demo:
            args.data = str(synthetic.generate_demo_dataset()) if self.is_main else None
            args.data = broadcast_object(args.data, self.context)
            if not args.cfg and not args.weights:
                args.cfg = str(PACKAGE_CONFIGS / "models" / DEMO_MODEL)
            args.img = args.img or DEMO_IMG_SIZE
            args.epochs = args.epochs or DEMO_EPOCHS
            args.hyp = args.hyp or str(PACKAGE_CONFIGS / "hyps" / DEMO_HYP)
            args.optimizer = args.optimizer or DEMO_OPTIMIZER
            self.log(f"demo: synthetic shapes set {args.data}, model {Path(args.cfg or args.weights).name}, {args.img} px")
        if not args.cfg and not args.weights:
            raise UserError("give --cfg MODEL.yaml and/or --weights FILE (or neither and no --data for the demo)")
        args.img = args.img or 640
        args.epochs = args.epochs or 100
        args.optimizer = args.optimizer or DEFAULT_OPTIMIZER
        self.data = load_dataset_config(args.data)
        self.hyp = self.load_hyp()
        self.save_dir = Path(getattr(args, "save_dir", None) or increment_path(Path(args.project) / args.name, args.exist_ok))
        args.save_dir = str(self.save_dir)
        self.weights_dir = self.save_dir / "weights"
        if self.is_main:
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            (self.save_dir / "hyp.yaml").write_text(yaml.safe_dump(self.hyp, sort_keys=False))
            (self.save_dir / "opt.yaml").write_text(yaml.safe_dump(option_values(args), sort_keys=False))
        seed_everything(args.seed + 1 + max(self.context.rank, 0))
        self.model = self.build_model()
        self.stride = max(int(self.model.stride.max()), 32)
        if args.img % self.stride:
            new = math.ceil(args.img / self.stride) * self.stride
            self.log(f"--img {args.img} is not a multiple of the max stride {self.stride}; using {new}")
            args.img = new
        self.world_batch = args.batch
        self.batch_size = args.batch // self.context.world_size
        if self.batch_size < 1:
            raise UserError(f"--batch {args.batch} is smaller than the {self.context.world_size} processes")
        self.stopper = EarlyStopping(args.patience)
        self.amp = self.device.type == "cuda"

    def load_hyp(self) -> dict[str, Any]:
        if self.resume_checkpoint is not None and self.resume_checkpoint.get("hyp"):
            return dict(self.resume_checkpoint["hyp"])
        path = Path(self.args.hyp) if self.args.hyp else PACKAGE_CONFIGS / "hyps" / DEFAULT_HYP
        hyp = read_yaml_mapping(path, "hyperparameter YAML")
        hyp["label_smoothing"] = self.args.label_smoothing
        return hyp

    def build_model(self) -> nn.Module:
        """The model: from --cfg, from --weights (transferring matching tensors), or the resumed checkpoint."""
        args, nc = self.args, self.data.nc
        if self.resume_checkpoint is not None:
            checkpoint = self.resume_checkpoint
            model = build_model(checkpoint["model_yaml"], nc=nc)
            model.load_state_dict(checkpoint["state_dict"], strict=True)
        elif args.weights:
            checkpoint = load_checkpoint(args.weights)
            model = build_model(args.cfg or checkpoint["model_yaml"], nc=nc)
            source = checkpoint.get("ema") or checkpoint["state_dict"]
            exclude = ("anchor",) if args.cfg else ()  # a given --cfg keeps its own anchors (YOLOv5)
            transferred = transfer_weights(model, source, exclude)
            self.log(f"transferred {transferred}/{len(model.state_dict())} items from {args.weights}")
        else:
            model = build_model(args.cfg, nc=nc)
        model.names = list(self.data.names)
        return model.to(self.device)

    def make_loader(self, split: str, augment: bool, mosaic: bool = True):
        """(loader, dataset) of ``split``: the augmented train loader or the rectangular val loader."""
        args = self.args
        workers = args.workers
        if augment:
            hyp = self.hyp if mosaic else {**self.hyp, "mosaic": 0.0}
            return create_dataloader(
                self.data.split(split), img_size=args.img, batch_size=self.batch_size, stride=self.stride,
                augment=True, hyp=hyp, rect=args.rect, pad=0.0, workers=workers, shuffle=not args.rect,
                seed=args.seed, rank=self.context.rank, dataset_cls=TrainDataset,
            )
        return create_dataloader(
            self.data.split(split), img_size=args.img, batch_size=self.batch_size * 2, stride=self.stride,
            augment=False, hyp=None, rect=True, pad=0.5, workers=workers * 2, shuffle=False, seed=args.seed, rank=-1,
        )

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any] | None:
        try:
            return self._run()
        finally:
            cleanup(self.context)

    def _run(self) -> dict[str, Any] | None:
        self.start_time = time.time()
        self.setup()
        args, hyp = self.args, self.hyp
        head = self.model.head
        resume = self.resume_checkpoint
        self.earlier_wall_s = float(resume.get("wall_s", 0.0)) if resume is not None else 0.0
        start_epoch = int(resume["epoch"]) + 1 if resume is not None else 0
        if start_epoch >= args.epochs:
            raise UserError(f"{args.resume}: training to {args.epochs} epochs is already finished; nothing to resume")

        train_loader, train_dataset = self.make_loader("train", augment=True, mosaic=not self.mosaic_closed(start_epoch))
        val_loader = self.make_loader("val", augment=False)[0] if self.is_main else None
        labels = train_dataset.labels
        if resume is None and self.is_main:
            if not args.noplots:
                results.plot_labels(labels, self.data.names, self.save_dir / "labels.jpg")
            if not args.noautoanchor and head_contract(head).anchor_based:
                report = check_anchors(train_dataset, head, hyp["anchor_t"], args.img)
                self.log(
                    f"AutoAnchor: {report.anchors_above_threshold:.2f} anchors/target, best possible recall {report.bpr:.4f}"
                    + (f" -> {report.new_bpr:.4f}, anchors replaced" if report.replaced else "")
                )
        if self.context.enabled and head_contract(head).anchor_based:
            anchors = broadcast_object(head.anchors.cpu() if self.is_main else None, self.context)
            head.anchors.copy_(anchors.to(head.anchors))

        self.nominal_batch = int(hyp.get("nbs", NOMINAL_BATCH_SIZE))
        accumulate = max(round(self.nominal_batch / self.world_batch), 1)
        weight_decay = hyp["weight_decay"] * self.world_batch * accumulate / self.nominal_batch
        self.optimizer = build_optimizer(self.model, args.optimizer, hyp["lr0"], hyp["momentum"], weight_decay)
        self.lf = lr_lambda(args.epochs, hyp["lrf"], args.cos_lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=self.lf)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.ema = ModelEMA(self.model) if self.is_main else None
        best_fitness = 0.0
        if resume is not None:
            best_fitness = self.restore_training_state(resume)

        loss_hyp = scale_loss_gains(hyp, head.nl, self.data.nc, args.img)
        self.compute_loss = build_loss(head, loss_hyp, args.loss)
        self.val_loss = build_loss(self.ema.ema.head, loss_hyp, for_eval=True) if self.is_main else None
        self.train_model = wrap_model(self.model, self.context, args.sync_bn and self.context.enabled)
        batches = len(train_loader)
        warmup_iters = warmup_iterations(hyp, batches)
        self.scheduler.last_epoch = start_epoch - 1
        csv_path = self.save_dir / RESULTS_CSV
        if self.is_main:
            results.truncate_results(csv_path, start_epoch)
        self.log(
            f"training {Path(args.cfg or args.weights).name} on {args.data}: {len(train_dataset)} images, "
            f"{args.img} px, batch {self.world_batch}, {self.context.world_size} process(es) on {self.device}, "
            f"epochs {start_epoch}..{args.epochs - 1}, results in {self.save_dir}"
        )
        last_opt_step = int(resume.get("last_opt_step", -1)) if resume is not None else -1
        metrics: dict[str, Any] = {}
        epoch = start_epoch - 1
        for epoch in range(start_epoch, args.epochs):
            if self.mosaic_closed(epoch) and not self.mosaic_closed(epoch - 1) and epoch > start_epoch:
                self.log(f"closing mosaic for the last {args.close_mosaic} epochs")
                train_loader, train_dataset = self.make_loader("train", augment=True, mosaic=False)
            mean_losses, last_opt_step = self.train_one_epoch(epoch, train_loader, warmup_iters, batches, last_opt_step)
            lrs = [group["lr"] for group in self.optimizer.param_groups]
            self.scheduler.step()
            stop = False
            if self.is_main:
                final_epoch = epoch + 1 == args.epochs
                self.ema.update_attributes(self.model)
                if not args.noval or final_epoch:
                    metrics = self.validate(val_loader, final_epoch)
                    self.log(
                        f"  val: P {metrics['precision']:.4f}  R {metrics['recall']:.4f}  mAP50 {metrics['map50']:.4f}  "
                        f"mAP50-95 {metrics['map50_95']:.4f}"
                    )
                fit = self.fitness(metrics)
                stop = self.stopper(epoch, fit)
                best_fitness = max(best_fitness, fit)
                record = EpochRecord(epoch, mean_losses, metrics, lrs)
                results.append_results_row(csv_path, record.row())
                if not args.nosave or final_epoch:
                    self.save(epoch, best_fitness, is_best=fit == best_fitness, last_opt_step=last_opt_step)
                stop = stop or final_epoch
            stop = self.broadcast_stop(stop)
            if stop:
                if epoch + 1 < args.epochs:
                    self.log(f"early stopping: no improvement in {args.patience} epochs (best epoch {self.stopper.best_epoch})")
                break
        if not self.is_main:
            return None
        if not args.noplots:
            results.plot_results(csv_path)
        wall = self.wall_s()
        summary = {
            "map50": float(metrics.get("map50", 0.0)),
            "map50_95": float(metrics.get("map50_95", 0.0)),
            "precision": float(metrics.get("precision", 0.0)),
            "recall": float(metrics.get("recall", 0.0)),
            "epochs": epoch + 1,
            "wall_s": round(wall, 2),
            "best": str(self.weights_dir / "best.pt"),
            "last": str(self.weights_dir / "last.pt"),
            "save_dir": str(self.save_dir),
        }
        self.log(
            f"{epoch + 1} epochs in {wall:.1f} s: mAP50 {summary['map50']:.4f}, mAP50-95 {summary['map50_95']:.4f}; "
            f"weights in {self.weights_dir}"
        )
        return summary

    def mosaic_closed(self, epoch: int) -> bool:
        return self.args.close_mosaic > 0 and epoch >= self.args.epochs - self.args.close_mosaic

    def train_one_epoch(self, epoch: int, loader, warmup_iters: int, batches: int, last_opt_step: int):
        """One pass over the training set; returns the mean (box, obj, cls) losses and the last optimiser step."""
        args = self.args
        self.train_model.train()
        # Shuffle order and worker seeds depend on the epoch only, so a resumed run repeats them.
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        if loader.generator is not None:
            loader.generator.manual_seed((args.seed + epoch) * self.context.world_size + max(self.context.rank, 0))
        mean_losses = torch.zeros(3, device=self.device)
        progress = enumerate(loader)
        if self.is_main:
            progress = tqdm(progress, total=batches, desc=f"epoch {epoch + 1}/{args.epochs}", leave=True, mininterval=1.0)
        self.optimizer.zero_grad()
        for i, (images, targets, _paths, _shapes) in progress:
            iteration = i + batches * epoch
            images = images.to(self.device, non_blocking=True).float() / 255
            accumulate = accumulation_steps(iteration, warmup_iters, self.world_batch, self.nominal_batch)
            if iteration <= warmup_iters:
                apply_warmup(self.optimizer, iteration, warmup_iters, self.lf(epoch), self.hyp)
            with torch.autocast(device_type=self.device.type, enabled=self.amp):
                preds = self.train_model(images)
                loss, loss_items = self.compute_loss(preds, targets.to(self.device))
            if self.context.enabled:
                loss = loss * self.context.world_size  # DDP averages gradients over processes
            self.scaler.scale(loss).backward()
            if iteration - last_opt_step >= accumulate:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=10.0)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad()
                if self.ema is not None:
                    self.ema.update(self.model)
                last_opt_step = iteration
            mean_losses = (mean_losses * i + loss_items) / (i + 1)
            if self.is_main:
                box, obj, cls = mean_losses.tolist()
                progress.set_postfix_str(f"box {box:.4f} obj {obj:.4f} cls {cls:.4f} n {targets.shape[0]} {images.shape[-1]}px")
                if epoch == 0 and i == 0 and not args.noplots and self.resume_checkpoint is None:
                    results.plot_batch(images, targets, self.save_dir / "train_batch0.jpg")
        return mean_losses.tolist(), last_opt_step

    def validate(self, val_loader, final_epoch: bool) -> dict[str, Any]:
        return evaluate(
            self.ema.ema, self.data, img_size=self.args.img, batch_size=self.batch_size * 2, conf_thres=0.001,
            iou_thres=0.6, device=self.device, half=self.amp, save_dir=self.save_dir, plots=final_epoch and not self.args.noplots,
            coco=False, dataloader=val_loader, names=list(self.data.names), compute_loss=self.val_loss,
        )

    @staticmethod
    def fitness(metrics: dict[str, Any]) -> float:
        return fitness(float(metrics.get("map50", 0.0)), float(metrics.get("map50_95", 0.0)))

    def broadcast_stop(self, stop: bool) -> bool:
        return bool(broadcast_object(stop, self.context))

    def save(self, epoch: int, best_fitness: float, is_best: bool, last_opt_step: int) -> None:
        """Write last.pt (and best.pt) atomically with everything resume needs."""
        checkpoint = make_checkpoint(
            self.model, names=list(self.data.names), ema=self.ema, optimizer=self.optimizer, scaler=self.scaler,
            epoch=epoch, best_fitness=best_fitness, hyp=self.hyp, train_args=option_values(self.args),
            extra={
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(),
                "early_stopping": {"best_epoch": self.stopper.best_epoch, "best_fitness": self.stopper.best_fitness},
                "last_opt_step": last_opt_step,
                "wall_s": self.wall_s(),
            },
        )
        save_checkpoint(self.weights_dir / "last.pt", checkpoint)
        if is_best:
            save_checkpoint(self.weights_dir / "best.pt", checkpoint)

    def wall_s(self) -> float:
        """Wall time of the whole run, the sessions before a resume included."""
        return self.earlier_wall_s + time.time() - self.start_time

    def restore_training_state(self, checkpoint: dict[str, Any]) -> float:
        """Optimizer, scaler, EMA, scheduler, early stopping and RNG of the resumed run; returns the best fitness."""
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        if self.ema is not None and checkpoint.get("ema"):
            self.ema.ema.load_state_dict(checkpoint["ema"])
            self.ema.updates = int(checkpoint.get("ema_updates", 0))
        if checkpoint.get("scheduler"):
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        stopping = checkpoint.get("early_stopping") or {}
        self.stopper.best_epoch = int(stopping.get("best_epoch", 0))
        self.stopper.best_fitness = float(stopping.get("best_fitness", 0.0))
        if checkpoint.get("rng") and self.context.rank in (-1, 0):
            restore_rng_state(checkpoint["rng"])
        self.log(f"resuming {self.args.resume} after epoch {checkpoint['epoch']}")
        return float(checkpoint.get("best_fitness") or 0.0)
