"""Training a YAML-defined detector (YOLOv5's ``train.py`` recipe, Jocher et al. 2020).

SGD/AdamW in three parameter groups, warm-up, linear or cosine LR, a nominal batch (hyp ``nbs``,
default 64) through gradient accumulation, EMA weights validated every epoch, AMP on CUDA, early
stopping, atomic ``last.pt`` / ``best.pt``, exact resume, DDP through torchrun. Without ``data`` it
trains the built-in synthetic demo set (generated once into the cache folder): yolov5n from scratch
at 320 px, AdamW, 12 epochs (``configs/hyps/hyp.demo.yaml``). The head's contract picks the loss.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from yolo_attn.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint, transfer_pretrained
from yolo_attn.data import synthetic
from yolo_attn.data.augment import TrainDataset
from yolo_attn.data.config import DatasetConfig, load_dataset_config
from yolo_attn.data.dataset import DetectionDataset, create_dataloader
from yolo_attn.engine import results
from yolo_attn.engine.autoanchor import check_anchors
from yolo_attn.engine.bn_calibration import calibrate_behind, image_batches
from yolo_attn.engine.distributed import broadcast_object, cleanup, init_distributed, wrap_model
from yolo_attn.engine.optim import (
    AUTO,
    NOMINAL_BATCH_SIZE,
    OPTIMIZERS,
    EarlyStopping,
    ModelEMA,
    accumulation_steps,
    apply_warmup,
    auto_iterations,
    auto_optimizer,
    build_optimizer,
    fitness,
    lr_lambda,
    warmup_iterations,
)
from yolo_attn.engine.options import option
from yolo_attn.engine.training_state import TrainingState, seed_everything
from yolo_attn.engine.validator import RECT_PAD, EvalConfig, evaluate
from yolo_attn.errors import UserError
from yolo_attn.losses import build_loss, loss_names
from yolo_attn.losses.yolov5 import scale_loss_gains
from yolo_attn.nn.builder import build_model, model_schema
from yolo_attn.nn.heads import head_contract
from yolo_attn.nn.model import DetectionModel, max_stride, try_channels_last
from yolo_attn.utils.builtin import builtin_config
from yolo_attn.utils.device import DEFAULT_DEVICE, DEVICE_HELP
from yolo_attn.utils.paths import increment_path
from yolo_attn.utils.runtime import reusing_freed_memory
from yolo_attn.utils.yaml_io import read_yaml_mapping

LOGGER = logging.getLogger(__name__)


DEMO_MODEL = "yolov5n.yaml"  # the demo's model when neither --cfg nor --weights is given
KIND_DEFAULT = "kind_default"  # the metadata key of a field's KindDefault


@dataclass(frozen=True)
class KindDefault:
    """The default of an option left ``None`` until the run's kind is known: a regular run or the demo."""

    regular: Any
    demo: Any


def kind_option(regular: Any, demo: Any, help: str = "", **kwargs: Any) -> Any:
    """An option whose ``None`` :func:`with_defaults` replaces by ``regular`` (or ``demo``); its help names both."""
    note = f"default {regular}; demo {demo}"
    return option(None, f"{help} ({note})" if help else note, **kwargs, **{KIND_DEFAULT: KindDefault(regular, demo)})


@dataclass(frozen=True)
class TrainConfig:
    """A training run's options. A field made with :func:`~yolo_attn.engine.options.option` is a ``yolo-attn train``
    flag (and an ``ablate`` one) with that default and help; ``None`` in a :func:`kind_option` means the default of
    the run's kind: a regular run or the demo (no ``data``: the synthetic set, :data:`DEMO_MODEL`). ``resume``: True
    (latest ``last.pt`` under ``project``) or a checkpoint path. ``project``, ``name``, ``exist_ok``: the run-folder
    flags every command shares (``yolo_attn/commands/common.py``)."""

    cfg: str | None = option(None, "model YAML, or a built-in name such as yolov5s.yaml (with --weights: build this "
                             "and transfer the pretrained layers into their counterparts)")
    weights: str | None = option(None, "initial weights: our checkpoint or an upstream YOLOv5/YOLOv7 .pt")
    transfer_report: bool = option(False, "print which pretrained layer went into which model layer "
                                   "(--weights with --cfg)")
    bn_calibration: int = option(128, "with --weights: re-estimate the BatchNorm statistics behind new layers on N "
                                 "training images (0: off)", metavar="N")
    data: str | None = option(None, "dataset YAML (default: the built-in synthetic demo set)")
    hyp: str | None = kind_option("hyp.scratch-low.yaml", "hyp.demo.yaml", "hyperparameter YAML or built-in name")
    epochs: int | None = kind_option(100, 12)
    batch: int = option(16, "total batch size over all processes", flags=("--batch", "--batch-size"))
    img: int | None = kind_option(640, 320, "train/val image size", flags=("--img", "--img-size"))
    device: str = option(DEFAULT_DEVICE, DEVICE_HELP)
    workers: int = option(8, "max dataloader workers per process")
    optimizer: str | None = kind_option(AUTO, "AdamW", "auto: SGD for a YOLOv5/YOLOv7-schema model, Ultralytics' "
                                        "optimizer=auto (AdamW or MuSGD) for an Ultralytics-schema one "
                                        "(docs/models.md)", choices=(AUTO, *OPTIMIZERS))
    cos_lr: bool = option(False, "cosine LR schedule (default linear)")
    label_smoothing: float = option(0.0, "label smoothing epsilon of the class targets (0: off)")
    patience: int = option(100, "early stopping: epochs without improvement")
    close_mosaic: int = option(0, "train the last N epochs without mosaic")
    loss: str = option("auto", "auto: the loss the model's head declares", choices=("auto", *loss_names()))
    rect: bool = option(False, "rectangular training batches (no mosaic)")
    sync_bn: bool = option(False, "SyncBatchNorm in DDP")
    noval: bool = option(False, "validate only after the final epoch")
    nosave: bool = option(False, "save only the final checkpoint")
    noautoanchor: bool = option(False, "skip the AutoAnchor check")
    noplots: bool = option(False, "no label/batch/results plots")
    resume: bool | str = option(False, "resume the latest (or the given) last.pt")
    project: str = "runs/train"
    name: str = "exp"
    exist_ok: bool = False
    seed: int = option(0, "seed of the initialisation, the data order and the augmentation")
    save_period: int = option(-1, "also save weights/epoch<E>.pt every N epochs (E counts from 0, as in results.csv; "
                              "< 1: off)", metavar="N")
    save_dir: str | None = None  # the folder of a resumed run

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> TrainConfig:
        """A config from saved options (``opt.yaml``, a checkpoint's ``train_args``); unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names})


# field name -> its KindDefault, for every kind_option of TrainConfig
KIND_DEFAULTS: dict[str, KindDefault] = {
    f.name: f.metadata[KIND_DEFAULT] for f in dataclasses.fields(TrainConfig) if KIND_DEFAULT in f.metadata
}


def with_defaults(config: TrainConfig, demo_data: str | None = None) -> TrainConfig:
    """``config`` with every ``None`` option given its default (the demo's when ``demo_data`` is the demo set)."""
    if demo_data is not None:
        cfg = config.cfg or (None if config.weights else DEMO_MODEL)
        config = dataclasses.replace(config, data=demo_data, cfg=cfg)
    filled = {name: default.demo if demo_data is not None else default.regular
              for name, default in KIND_DEFAULTS.items() if getattr(config, name) is None}
    config = dataclasses.replace(config, **filled)
    cfg = config.cfg and str(builtin_config(config.cfg, "model"))
    return dataclasses.replace(config, cfg=cfg, hyp=str(builtin_config(config.hyp, "hyp")))


def latest_last_checkpoint(project: Path) -> Path:
    candidates = sorted(project.glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise UserError(f"--resume: no */weights/last.pt under {project}; give the checkpoint path")
    return candidates[-1]


def resume_config(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any]]:
    """The options of the run being resumed (this call's device wins) and its checkpoint."""
    path = Path(config.resume) if isinstance(config.resume, str) else latest_last_checkpoint(Path(config.project))
    checkpoint = load_checkpoint(path)
    training = checkpoint["training"] or {}
    if not checkpoint["train_args"] or training.get("optimizer") is None:
        raise UserError(f"{path}: has no training state to resume (it is a final or an upstream checkpoint)")
    saved = TrainConfig.from_options(checkpoint["train_args"])
    resumed = dataclasses.replace(saved, resume=str(path), device=config.device or saved.device,
                                  save_dir=str(path.parent.parent))
    return resumed, checkpoint


class Trainer:
    """One training run (one process of it under DDP). :meth:`run` returns the summary dict."""

    def __init__(self, config: TrainConfig):
        self.resume_checkpoint: dict[str, Any] | None = None
        if config.resume:
            config, self.resume_checkpoint = resume_config(config)
        self.config = config
        self.context = init_distributed(config.device)
        self.device = self.context.device
        self.is_main = self.context.is_main
        self.amp = self.device.type == "cuda"
        self.world_batch = config.batch
        self.batch_size = config.batch // self.context.world_size
        self.process_seed = config.seed + 1 + max(self.context.rank, 0)
        # The augmentation stream of this process: every train dataset draws from it, checkpoints keep its state.
        self.augment_rng = np.random.default_rng(self.process_seed)
        # Set by setup():
        self.data: DatasetConfig | None = None
        self.hyp: dict[str, Any] = {}
        self.save_dir = self.weights_dir = Path()
        self.model: DetectionModel | None = None
        self.stride = 32
        # Set by prepare_training():
        self.state: TrainingState | None = None
        self.compute_loss = self.val_loss = None
        self.train_model: nn.Module | None = None
        self.nominal_batch = NOMINAL_BATCH_SIZE
        self.lr_factor = lr_lambda(1, 1.0)
        self.channels_last = False

    def log(self, message: str, level: int = logging.INFO) -> None:
        """Log from the main process only (the others repeat it)."""
        if self.is_main:
            LOGGER.log(level, message)

    # -- set-up -------------------------------------------------------------------------------

    def setup(self) -> None:
        """Resolve the options, read data and hyp, make the run folder and build the model."""
        demo_data = None
        if not self.config.data:
            demo_data = broadcast_object(str(synthetic.generate_demo_dataset()) if self.is_main else None, self.context)
        self.config = with_defaults(self.config, demo_data)
        config = self.config
        if demo_data is not None:
            self.log(f"demo: synthetic shapes set {config.data}, model {Path(config.cfg or config.weights).name}, "
                     f"{config.img} px")
        if not config.cfg and not config.weights:
            raise UserError("give --cfg MODEL.yaml and/or --weights FILE (or neither and no --data for the demo)")
        if self.batch_size < 1:
            raise UserError(f"--batch {config.batch} is smaller than the {self.context.world_size} processes")
        self.data = load_dataset_config(config.data)
        self.hyp = self.load_hyp()
        self.make_run_dir()
        seed_everything(self.process_seed)
        self.model, new_layers = self.build_model()
        self.stride = max_stride(self.model)
        if config.img % self.stride:
            new = math.ceil(config.img / self.stride) * self.stride
            self.log(f"--img {config.img} is not a multiple of the max stride {self.stride}; using {new}",
                     logging.WARNING)
            self.config = dataclasses.replace(config, img=new)
        self.calibrate_behind(new_layers)
        # Again: the draws of the model's initialisation (an ablation variant's extra layer) must not shift
        # the random streams the data pipeline and training use after it.
        seed_everything(self.process_seed)

    def load_hyp(self) -> dict[str, Any]:
        if self.resume_checkpoint is not None and self.resume_checkpoint.get("hyp"):
            return dict(self.resume_checkpoint["hyp"])
        hyp = read_yaml_mapping(self.config.hyp, "hyperparameter YAML")
        hyp["label_smoothing"] = self.config.label_smoothing
        return hyp

    def make_run_dir(self) -> None:
        config = self.config
        save_dir = config.save_dir or increment_path(Path(config.project) / config.name, config.exist_ok)
        self.config = dataclasses.replace(config, save_dir=str(save_dir))
        self.save_dir, self.weights_dir = Path(save_dir), Path(save_dir) / "weights"
        if self.is_main:
            self.weights_dir.mkdir(parents=True, exist_ok=True)
        self.write_options()

    def write_options(self) -> None:
        """hyp.yaml and opt.yaml in the run folder (main process)."""
        if self.is_main:
            (self.save_dir / "hyp.yaml").write_text(yaml.safe_dump(self.hyp, sort_keys=False))
            (self.save_dir / "opt.yaml").write_text(yaml.safe_dump(dataclasses.asdict(self.config), sort_keys=False))

    def build_model(self) -> tuple[DetectionModel, set[int]]:
        """The model (from --cfg, from --weights transferred layer by layer into --cfg's model, or the resumed
        checkpoint) and its layers that --weights had no counterpart for."""
        config, nc, new_layers = self.config, self.data.nc, set()
        if self.resume_checkpoint is not None:
            model = build_model(self.resume_checkpoint["model_yaml"], nc=nc)
            model.load_state_dict(self.resume_checkpoint["state_dict"], strict=True)
        elif config.weights:
            checkpoint = load_checkpoint(config.weights)
            model = build_model(config.cfg or checkpoint["model_yaml"], nc=nc)
            source = checkpoint["ema"] or checkpoint["state_dict"]
            exclude = ("anchor",) if config.cfg else ()  # a given --cfg keeps its own anchors (YOLOv5)
            report = transfer_pretrained(model, source, checkpoint["model_yaml"], exclude)
            self.log(f"{report.summary()} from {config.weights}")
            if config.transfer_report:
                self.log(report.table())
            new_layers = report.new_layers()
        else:
            model = build_model(config.cfg, nc=nc)
        model.names = list(self.data.names)
        return model.to(self.device), new_layers

    def calibrate_behind(self, new_layers: set[int]) -> None:
        """Re-estimate the BatchNorm statistics behind the layers --weights did not cover (bn_calibration.py)."""
        if not new_layers or self.config.bn_calibration <= 0:
            return
        loader, _ = self.make_loader("train", augment=False)
        batches = image_batches(loader, self.config.bn_calibration, self.device)
        count = calibrate_behind(self.model, new_layers, batches)
        if count:
            self.log(f"re-estimated {count} BatchNorm layers behind the new layers on "
                     f"{min(self.config.bn_calibration, len(loader.dataset))} training images")

    def make_loader(self, split: str, augment: bool, mosaic: bool = True):
        """(loader, dataset) of ``split``: the augmented train loader (drawing from :attr:`augment_rng`) or the
        rectangular val loader."""
        config, source, prefix = self.config, self.data.split(split), f"{split}: "
        if augment:
            hyp = self.hyp if mosaic else {**self.hyp, "mosaic": 0.0}
            dataset = TrainDataset(source, config.img, self.batch_size, rect=config.rect, stride=self.stride, hyp=hyp,
                                   prefix=prefix, seed=self.augment_rng)
            return create_dataloader(dataset, self.batch_size, config.workers, shuffle=not config.rect,
                                     seed=config.seed, rank=self.context.rank), dataset
        dataset = DetectionDataset(source, config.img, self.batch_size * 2, rect=True, stride=self.stride, pad=RECT_PAD,
                                   prefix=prefix)
        return create_dataloader(dataset, self.batch_size * 2, config.workers * 2, seed=config.seed), dataset

    def check_dataset(self, train_dataset: TrainDataset) -> None:
        """Label plot and AutoAnchor (anchor-based heads) on a fresh run; anchors shared with every process."""
        head = self.model.head
        anchor_based = head_contract(head).anchor_based
        if self.resume_checkpoint is None and self.is_main:
            if not self.config.noplots:
                results.plot_labels(train_dataset.labels, self.data.names, self.save_dir / "labels.jpg")
            if not self.config.noautoanchor and anchor_based:
                report = check_anchors(train_dataset, head, self.hyp["anchor_t"], self.config.img,
                                       seed=self.config.seed)
                self.log(
                    f"AutoAnchor: {report.anchors_above_threshold:.2f} anchors/target, best possible recall "
                    f"{report.bpr:.4f}" + (f" -> {report.new_bpr:.4f}, anchors replaced" if report.replaced else "")
                )
        if self.context.enabled and anchor_based:
            anchors = broadcast_object(head.anchors.cpu() if self.is_main else None, self.context)
            head.anchors.copy_(anchors.to(head.anchors))
            head.reset_grids()

    def choose_optimizer(self, train_images: int) -> tuple[str, float, float]:
        """The optimiser's (name, lr0, momentum). ``--optimizer auto`` becomes SGD (YOLOv5's default) for a
        YOLOv5/YOLOv7-schema model and Ultralytics' ``optimizer=auto`` for an Ultralytics-schema one, which also
        starts the bias warm-up at 0; the choice goes into the config and hyp (opt.yaml, hyp.yaml, checkpoints), so
        a resumed run rebuilds it. Ultralytics' warm-up still ramps momentum to the hyp's, as ours does."""
        config, hyp, model, data = self.config, self.hyp, self.model, self.data
        assert config.optimizer and config.epochs and model and data, "setup() resolves these first"
        if config.optimizer != AUTO:
            return config.optimizer, hyp["lr0"], hyp["momentum"]
        if model_schema(model.yaml) != "ultralytics":
            name, lr, momentum = "SGD", hyp["lr0"], hyp["momentum"]
        else:
            iterations = auto_iterations(train_images, self.world_batch, self.nominal_batch, config.epochs)
            name, lr, momentum = dataclasses.astuple(auto_optimizer(data.nc, iterations))
            hyp.update(lr0=lr, warmup_bias_lr=0.0)
            self.log(f"optimizer auto: {name} (lr0 {lr}, momentum {momentum}) for {iterations} iterations "
                     f"(Ultralytics' rule)")
        self.config = dataclasses.replace(config, optimizer=name)
        self.write_options()
        return name, lr, momentum

    def prepare_training(self, train_images: int) -> None:
        """Optimizer, schedule, scaler, EMA and early stopping (restored on resume), the losses and DDP."""
        config, hyp, head = self.config, self.hyp, self.model.head
        self.nominal_batch = int(hyp.get("nbs", NOMINAL_BATCH_SIZE))
        accumulate = max(round(self.nominal_batch / self.world_batch), 1)
        weight_decay = hyp["weight_decay"] * self.world_batch * accumulate / self.nominal_batch
        # On CPU, NHWC weights (and batches) before the optimizer and EMA copy them: ~10% less time per step.
        self.channels_last = self.device.type == "cpu" and try_channels_last(self.model)
        optimizer = build_optimizer(self.model, *self.choose_optimizer(train_images), weight_decay)
        self.lr_factor = lr_lambda(config.epochs, hyp["lrf"], config.cos_lr)
        self.state = TrainingState(
            optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=self.lr_factor),
            scaler=torch.amp.GradScaler("cuda", enabled=self.amp),
            ema=ModelEMA(self.model) if self.is_main else None,
            stopper=EarlyStopping(config.patience),
            augment_rng=self.augment_rng,
        )
        if self.resume_checkpoint is not None:
            checkpoint = self.resume_checkpoint
            self.state.load_state_dict(checkpoint["training"], checkpoint["ema"], restore_rng=self.is_main)
            self.log(f"resuming {config.resume} after epoch {self.state.epoch}")
        self.state.scheduler.last_epoch = self.state.epoch
        loss_hyp = scale_loss_gains(hyp, head.nl, self.data.nc, config.img)
        self.compute_loss = build_loss(head, loss_hyp, config.loss)
        self.val_loss = build_loss(self.state.ema.ema.head, loss_hyp, for_eval=True) if self.is_main else None
        self.train_model = wrap_model(self.model, self.context, config.sync_bn and self.context.enabled)

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any] | None:
        try:
            return self._run()
        finally:
            cleanup(self.context)

    def _run(self) -> dict[str, Any] | None:
        self.setup()
        start_epoch = int(self.resume_checkpoint["epoch"]) + 1 if self.resume_checkpoint is not None else 0
        if start_epoch >= self.config.epochs:
            raise UserError(f"{self.config.resume}: training to {self.config.epochs} epochs is already finished; "
                            "nothing to resume")
        train_loader, train_dataset = self.make_loader("train", True, mosaic=not self.mosaic_closed(start_epoch))
        val_loader = self.make_loader("val", augment=False)[0] if self.is_main else None
        self.check_dataset(train_dataset)
        self.prepare_training(len(train_dataset))
        if self.is_main:
            results.truncate_results(self.save_dir / results.RESULTS_CSV, start_epoch)
        config = self.config
        self.log(
            f"training {Path(config.cfg or config.weights).name} on {config.data}: {len(train_dataset)} images, "
            f"{config.img} px, batch {self.world_batch}, {self.context.world_size} process(es) on {self.device}, "
            f"epochs {start_epoch}..{config.epochs - 1}, results in {self.save_dir}"
        )
        metrics = self.fit(train_loader, val_loader, start_epoch)
        if not self.is_main:
            return None
        if not config.noplots:
            results.plot_results(self.save_dir / results.RESULTS_CSV)
        return self.summary(metrics)

    def fit(self, train_loader, val_loader, start_epoch: int) -> dict[str, Any]:
        """The epoch loop; returns the last validation metrics (rank 0)."""
        config, metrics = self.config, {}
        warmup_iters = warmup_iterations(self.hyp, len(train_loader))
        for epoch in range(start_epoch, config.epochs):
            if callable(getattr(self.compute_loss, "set_epoch", None)):  # losses with a schedule (YOLOX's L1 tail)
                self.compute_loss.set_epoch(epoch, config.epochs)
            if self.mosaic_closed(epoch) and not self.mosaic_closed(epoch - 1) and epoch > start_epoch:
                self.log(f"closing mosaic for the last {config.close_mosaic} epochs")
                train_loader, _ = self.make_loader("train", augment=True, mosaic=False)
            with reusing_freed_memory():  # same-shaped steps: no page faults for their tensors
                mean_losses = self.train_one_epoch(epoch, train_loader, warmup_iters)
            lrs = [group["lr"] for group in self.state.optimizer.param_groups]
            self.state.scheduler.step()
            stop = False
            if self.is_main:
                metrics, stop = self.end_epoch(epoch, mean_losses, lrs, val_loader, metrics)
            if broadcast_object(stop, self.context):
                if epoch + 1 < config.epochs:
                    self.log(f"early stopping: no improvement in {config.patience} epochs "
                             f"(best epoch {self.state.stopper.best_epoch})")
                break
        return metrics

    def end_epoch(self, epoch: int, mean_losses: list[float], lrs: list[float], val_loader,
                  metrics: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Rank 0 after an epoch: validate, log results.csv, save; returns (metrics, whether to stop)."""
        final_epoch = epoch + 1 == self.config.epochs
        state = self.state
        state.ema.update_attributes(self.model)
        if not self.config.noval or final_epoch:
            metrics = self.validate(val_loader, final_epoch)
            self.log(f"  val: P {metrics['precision']:.4f}  R {metrics['recall']:.4f}  mAP50 {metrics['map50']:.4f}  "
                     f"mAP50-95 {metrics['map50_95']:.4f}")
        fit = fitness(float(metrics.get("map50", 0.0)), float(metrics.get("map50_95", 0.0)))
        stop = state.stopper(epoch, fit)
        state.best_fitness, state.epoch = max(state.best_fitness, fit), epoch
        row = results.epoch_row(epoch, mean_losses, metrics, lrs, self.compute_loss.item_names)
        results.append_results_row(self.save_dir / results.RESULTS_CSV, row)
        if not self.config.nosave or final_epoch:
            self.save(is_best=fit == state.best_fitness)
        return metrics, stop or final_epoch

    def mosaic_closed(self, epoch: int) -> bool:
        return self.config.close_mosaic > 0 and epoch >= self.config.epochs - self.config.close_mosaic

    def train_one_epoch(self, epoch: int, loader, warmup_iters: int) -> list[float]:
        """One pass over the training set; returns the mean loss items."""
        config, state, batches = self.config, self.state, len(loader)
        self.train_model.train()
        # Shuffle order and worker seeds depend on the epoch only, so a resumed run repeats them.
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        if loader.generator is not None:
            loader.generator.manual_seed((config.seed + epoch) * self.context.world_size + max(self.context.rank, 0))
        mean_losses = None
        progress = tqdm(loader, total=batches, desc=f"epoch {epoch + 1}/{config.epochs}", leave=True,
                        mininterval=1.0, disable=not self.is_main)
        state.optimizer.zero_grad()
        for i, (images, targets, _paths, _shapes) in enumerate(progress):
            iteration = i + batches * epoch
            if iteration <= warmup_iters:
                apply_warmup(state.optimizer, iteration, warmup_iters, self.lr_factor(epoch), self.hyp)
            images = images.to(self.device, non_blocking=True).float() / 255
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            loss_items = self.train_step(images, targets, iteration, warmup_iters)
            mean_losses = loss_items if mean_losses is None else (mean_losses * i + loss_items) / (i + 1)
            if self.is_main:
                shown = " ".join(f"{v:.4f}" for v in mean_losses.tolist())
                progress.set_postfix_str(f"loss {shown} n {targets.shape[0]} {images.shape[-1]}px")
                if epoch == 0 and i == 0 and not config.noplots and self.resume_checkpoint is None:
                    results.plot_batch(images, targets, self.save_dir / "train_batch0.jpg")
        return mean_losses.tolist() if mean_losses is not None else [0.0] * len(self.compute_loss.item_names)

    def train_step(self, images: torch.Tensor, targets: torch.Tensor, iteration: int, warmup_iters: int):
        """Forward, backward and (every ``accumulate`` batches) an optimiser step with EMA update."""
        state = self.state
        accumulate = accumulation_steps(iteration, warmup_iters, self.world_batch, self.nominal_batch)
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            loss, loss_items = self.compute_loss(self.train_model(images), targets.to(self.device))
        if self.context.enabled:
            loss = loss * self.context.world_size  # DDP averages gradients over processes
        state.scaler.scale(loss).backward()
        if iteration - state.last_opt_step >= accumulate:
            state.scaler.unscale_(state.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=10.0)
            state.scaler.step(state.optimizer)
            state.scaler.update()
            state.optimizer.zero_grad()
            if state.ema is not None:
                state.ema.update(self.model)
            state.last_opt_step = iteration
        return loss_items

    def validate(self, val_loader, final_epoch: bool) -> dict[str, Any]:
        """The EMA weights on the val split, through a fused copy (Conv+BN folded: ~10% faster)."""
        model = copy.deepcopy(self.state.ema.ema).fuse()
        config = EvalConfig(conf_thres=0.001, iou_thres=0.6, device=self.device, half=self.amp, save_dir=self.save_dir,
                            plots=final_epoch and not self.config.noplots, coco=False)
        return evaluate(model, config=config, dataloader=val_loader, names=list(self.data.names),
                        compute_loss=self.val_loss)

    def save(self, is_best: bool) -> None:
        """Write last.pt (and best.pt) atomically with everything resume needs."""
        state = self.state
        checkpoint = make_checkpoint(
            self.model, names=list(self.data.names), ema=state.ema.ema, training=state.state_dict(),
            epoch=state.epoch, best_fitness=state.best_fitness, hyp=self.hyp, train_args=dataclasses.asdict(self.config),
        )
        save_checkpoint(self.weights_dir / "last.pt", checkpoint)
        if is_best:
            save_checkpoint(self.weights_dir / "best.pt", checkpoint)
        if self.config.save_period > 0 and (state.epoch + 1) % self.config.save_period == 0:
            save_checkpoint(self.weights_dir / f"epoch{state.epoch}.pt", checkpoint)

    def summary(self, metrics: dict[str, Any]) -> dict[str, Any]:
        wall = self.state.wall_s()
        epochs = self.state.epoch + 1
        summary = {
            **{key: float(metrics.get(key, 0.0)) for key in results.METRIC_COLUMNS},
            "epochs": epochs,
            "wall_s": round(wall, 2),
            "best": str(self.weights_dir / "best.pt"),
            "last": str(self.weights_dir / "last.pt"),
            "save_dir": str(self.save_dir),
        }
        self.log(f"{epochs} epochs in {wall:.1f} s: mAP50 {summary['map50']:.4f}, mAP50-95 {summary['map50_95']:.4f}; "
                 f"weights in {self.weights_dir}")
        return summary


def train(config: TrainConfig | None = None, **options: Any) -> dict[str, Any]:
    """Train and return the summary (``map50``, ``map50_95``, ``precision``, ``recall``, ``epochs``, ``wall_s``,
    ``best``, ``last``, ``save_dir``). ``options`` are :class:`TrainConfig` fields overriding ``config``."""
    return Trainer(dataclasses.replace(config or TrainConfig(), **options)).run()
