"""Training a YAML-defined detector (YOLOv5's ``train.py`` recipe, Jocher et al. 2020).

SGD/AdamW in three parameter groups, warm-up, linear or cosine LR, a nominal batch (hyp ``nbs``,
default 64) through gradient accumulation, EMA weights validated every epoch, AMP on CUDA, early
stopping, atomic ``last.pt`` / ``best.pt``, exact resume, DDP through torchrun. Without ``data`` it
trains the built-in synthetic demo set (generated once into the cache folder): yolov5n from scratch
at 320 px, AdamW, 12 epochs (``configs/hyps/hyp.demo.yaml``). The head's contract picks the loss.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from yolo_attn.checkpoint import (
    CheckpointWriteError,
    load_checkpoint,
    load_for_resume,
    make_checkpoint,
    resume_candidates,
    save_checkpoint,
    strip_optimizer,
    transfer_pretrained,
)
from yolo_attn.data import synthetic
from yolo_attn.data.augment import TrainDataset
from yolo_attn.data.config import DatasetConfig, load_dataset_config
from yolo_attn.data.dataset import (
    DetectionDataset,
    WeightedImageSampler,
    create_dataloader,
    image_weights,
    single_class_names,
)
from yolo_attn.engine import results
from yolo_attn.engine.autoanchor import check_anchors
from yolo_attn.engine.autobatch import AUTO_BATCH, AUTO_BATCH_MEMORY, CPU_AUTO_BATCH, auto_batch_size
from yolo_attn.engine.bn_calibration import calibrate_behind, image_batches
from yolo_attn.engine.determinism import deterministic_training, set_cublas_workspace
from yolo_attn.engine.distributed import broadcast_object, cleanup, init_distributed, wrap_model
from yolo_attn.engine.nonfinite import NonFiniteGuard, check_finite_weights
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
    freeze_layers,
    lr_lambda,
    warmup_iterations,
)
from yolo_attn.engine.options import (
    BATCH_FLAGS,
    IMG_FLAGS,
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
    Bounds,
    check_options,
    option,
)
from yolo_attn.engine.tensorboard_logger import FINAL_FIGURES, TensorBoardLogger
from yolo_attn.engine.training_state import TrainingState, seed_everything
from yolo_attn.engine.validator import RECT_PAD, TABLE_HEADER, EvalConfig, evaluate, format_results, table_row
from yolo_attn.errors import UserError
from yolo_attn.losses import Loss, build_loss, loss_names
from yolo_attn.losses.yolov5 import scale_loss_gains
from yolo_attn.nn.builder import build_model, model_schema
from yolo_attn.nn.heads import head_contract
from yolo_attn.nn.heads.contract import AnchorBasedHead, DetectionHead
from yolo_attn.nn.model import DetectionModel, max_stride, try_channels_last
from yolo_attn.nn.summary import layer_table, summarize
from yolo_attn.utils.builtin import builtin_config
from yolo_attn.utils.cpu_share import ThreadGovernor
from yolo_attn.utils.device import DEFAULT_DEVICE, DEVICE_HELP
from yolo_attn.utils.paths import increment_path
from yolo_attn.utils.runtime import reusing_freed_memory
from yolo_attn.utils.yaml_io import read_yaml_mapping

LOGGER = logging.getLogger(__name__)

PLOTTED_BATCHES = 3  # train_batch{0,1,2}.jpg: the first batches of a fresh run (YOLOv5's)
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
    metadata: dict[str, Any] = {KIND_DEFAULT: KindDefault(regular, demo)}
    return option(None, f"{help} ({note})" if help else note, **kwargs, **metadata)


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
                                 "training images (0: off)", metavar="N", bounds=NON_NEGATIVE)
    data: str | None = option(None, "dataset YAML (default: the built-in synthetic demo set)")
    hyp: str | None = kind_option("hyp.scratch-low.yaml", "hyp.demo.yaml", "hyperparameter YAML or built-in name")
    epochs: int | None = kind_option(100, 12, bounds=POSITIVE)
    batch: int = option(16, f"total batch size over all processes; {AUTO_BATCH}: automatic (CUDA: what fits in "
                        f"{AUTO_BATCH_MEMORY * 100:.0f} %% of the GPU's memory, measured; CPU: {CPU_AUTO_BATCH})",
                        flags=BATCH_FLAGS, bounds=Bounds(1, also=(AUTO_BATCH,)))
    img: int | None = kind_option(640, 320, "train/val image size, rounded up to a multiple of the model's stride",
                                  flags=IMG_FLAGS, bounds=POSITIVE)
    device: str = option(DEFAULT_DEVICE, DEVICE_HELP)
    workers: int = option(8, "max dataloader workers per process", bounds=NON_NEGATIVE)
    threads: int = option(0, "CPU intra-op threads per process (0: as many as there are free cores, measured again "
                          "every few seconds as other work comes and goes; with --deterministic: all it may use)",
                          metavar="N", bounds=NON_NEGATIVE)
    optimizer: str | None = kind_option(AUTO, "AdamW", "auto: SGD for a YOLOv5/YOLOv7-schema model, Ultralytics' "
                                        "optimizer=auto (AdamW or MuSGD) for an Ultralytics-schema one "
                                        "(docs/models.md)", choices=(AUTO, *OPTIMIZERS))
    cos_lr: bool = option(False, "cosine LR schedule (default linear)")
    label_smoothing: float = option(0.0, "label smoothing epsilon of the class targets (0: off)", bounds=UNIT)
    patience: int = option(100, "early stopping: epochs without improvement (0: off)", bounds=NON_NEGATIVE)
    nonfinite_patience: int = option(10, "stop after N optimizer steps in a row skipped for a non-finite loss or "
                                     "gradient (each such step is skipped and counted in results.csv)", metavar="N",
                                     bounds=POSITIVE)
    deterministic: bool = option(False, "torch.use_deterministic_algorithms in full (an error, naming the layer, "
                                 "where an op has no deterministic kernel)")
    close_mosaic: int = option(0, "train the last N epochs without mosaic", bounds=NON_NEGATIVE)
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
    seed: int = option(0, "seed of the initialisation, the data order and the augmentation", bounds=NON_NEGATIVE)
    save_period: int = option(-1, "also save weights/epoch<E>.pt every N epochs (E counts from 1, as in results.csv "
                              "and the log; < 1: off)", metavar="N")
    freeze: tuple[int, ...] = option((0,), "freeze layers as YOLOv5 does: N freezes layers 0..N-1 (10: the YOLOv5 "
                                     "backbone), several numbers freeze those layers (0: none)", metavar="N",
                                     bounds=NON_NEGATIVE)
    cache: str | None = option(None, "cache the resized training and validation images: ram, or disk (.npy files "
                               "in the cache folder); --cache alone: ram", choices=("ram", "disk"), const="ram")
    single_cls: bool = option(False, "train every class as one ('item')")
    multi_scale: bool = option(False, "every batch at a random size in 0.5..1.5 x --img (multiples of the stride)")
    image_weights: bool = option(False, "draw training images by the weight of their classes, (1 - class mAP)^2 "
                                 "(one process only)")
    save_dir: str | None = None  # the folder of a resumed run

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> TrainConfig:
        """A config from saved options (``opt.yaml``, a checkpoint's ``train_args``); unknown keys are ignored, lists
        (``freeze``) become tuples again."""
        names = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if k in names}
        return cls(**values)


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
    assert config.hyp is not None  # filled in above
    cfg = config.cfg and absolute(builtin_config(config.cfg, "model"))
    weights, data = config.weights and absolute(config.weights), config.data and absolute(config.data)
    return dataclasses.replace(config, cfg=cfg, hyp=absolute(builtin_config(config.hyp, "hyp")), weights=weights,
                               data=data)


def absolute(path: str | Path) -> str:
    """``path`` resolved to an absolute one when it exists (what checkpoints and ``opt.yaml`` keep, so that a run
    resumes from any directory); as given otherwise, for the reader to report."""
    return str(Path(path).resolve()) if Path(path).exists() else str(path)


def model_source(config: TrainConfig) -> str:
    """What the run builds its model from: ``cfg``, else ``weights``."""
    source = config.cfg or config.weights
    if not source:
        raise UserError("give --cfg MODEL.yaml and/or --weights FILE (or neither and no --data for the demo)")
    return source


def latest_last_checkpoint(project: Path) -> Path:
    candidates = resume_candidates(project)
    if not candidates:
        raise UserError(f"--resume: no */weights/last.pt under {project}; give the checkpoint path")
    return candidates[-1]


def resume_config(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any]]:
    """The options of the run being resumed (this call's device wins) and its checkpoint."""
    path = Path(config.resume) if isinstance(config.resume, str) else latest_last_checkpoint(Path(config.project))
    path = path.resolve()
    checkpoint, _ = load_for_resume(path)  # a damaged last.pt: the previous one, with a warning
    if not checkpoint["train_args"]:
        raise UserError(f"{path}: has no training state to resume (an upstream or imported checkpoint)")
    saved = TrainConfig.from_options(checkpoint["train_args"])
    if saved.epochs is not None and int(checkpoint["epoch"]) + 1 >= saved.epochs:
        raise UserError(f"{path}: this run finished its {saved.epochs} epochs; nothing to resume (to train on, "
                        f"start a new run from it: yolo-attn train --weights {shlex.quote(str(path))} ...)")
    if (checkpoint["training"] or {}).get("optimizer") is None:
        raise UserError(f"{path}: has no training state to resume (a final checkpoint, stripped of its optimizer)")
    data = config.data or saved.data
    if data and not Path(data).is_file():
        raise UserError(f"{path}: the run's dataset YAML {data} is not there any more; if it moved, give its new "
                        f"place: yolo-attn train --resume {shlex.quote(str(path))} --data NEW.yaml")
    resumed = dataclasses.replace(saved, resume=str(path), device=config.device or saved.device, data=data,
                                  save_dir=str(path.parent.parent))
    return resumed, checkpoint


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where the last checkpoint is and how to resume from it."""


class Trainer:
    """One training run (one process of it under DDP). :meth:`run` returns the summary dict."""

    def __init__(self, config: TrainConfig):
        check_options(config)
        self.resume_checkpoint: dict[str, Any] | None = None
        if config.resume:
            config, self.resume_checkpoint = resume_config(config)
        self.config = config
        if config.deterministic:
            set_cublas_workspace()  # before anything runs on a GPU
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
        self.data: DatasetConfig
        self.hyp: dict[str, Any] = {}
        self.save_dir = self.weights_dir = Path()
        self.model: DetectionModel
        self.stride = 32
        # Set by prepare_training():
        self.state: TrainingState
        self.compute_loss: Loss
        self.val_loss: Loss | None = None  # rank 0 only
        self.train_model: nn.Module
        self.nominal_batch = NOMINAL_BATCH_SIZE
        self.lr_factor = lr_lambda(1, 1.0)
        self.channels_last = False
        self.tensorboard = TensorBoardLogger(None)  # writes on rank 0 from the start of the epochs
        self._guard: NonFiniteGuard | None = None  # made by prepare_training
        self.thread_governor = ThreadGovernor(enabled=False)  # made by cpu_threads() when the epochs start

    @property
    def guard(self) -> NonFiniteGuard:
        """The run's non-finite guard (made by :meth:`prepare_training`)."""
        assert self._guard is not None, "prepare_training() makes the guard"
        return self._guard

    @property
    def ema_model(self) -> DetectionModel:
        """The EMA copy of the model (rank 0 keeps one)."""
        ema = self.state.ema
        assert ema is not None and isinstance(ema.ema, DetectionModel)
        return ema.ema

    def log(self, message: str, level: int = logging.INFO) -> None:
        """Log from the main process only (the others repeat it)."""
        if self.is_main:
            LOGGER.log(level, message)

    # -- set-up -------------------------------------------------------------------------------

    def setup(self) -> None:
        """Resolve the options, read data and hyp, build the model and fit the options to it. The run folder waits
        until the run can start (:meth:`make_run_dir`)."""
        demo_data = None
        if not self.config.data:
            demo_data = broadcast_object(str(synthetic.generate_demo_dataset()) if self.is_main else None, self.context)
        self.config = with_defaults(self.config, demo_data)
        config = self.config
        assert config.data is not None and config.img is not None  # filled in by with_defaults
        source = model_source(config)
        if demo_data is not None:
            self.log(f"demo: synthetic shapes set {config.data}, model {Path(source).name}, {config.img} px")
        self.check_processes()
        self.data = load_dataset_config(config.data)
        if config.single_cls:
            self.data = dataclasses.replace(self.data, nc=1, names=single_class_names(self.data.names))
        self.hyp = self.load_hyp()
        seed_everything(self.process_seed)
        self.model, new_layers = self.build_model()
        self.stride = max_stride(self.model)
        self.fit_to_model()
        self.log_model_summary()
        self.calibrate_behind(new_layers)
        # Again: the draws of the model's initialisation (an ablation variant's extra layer) must not shift
        # the random streams the data pipeline and training use after it.
        seed_everything(self.process_seed)

    def check_processes(self) -> None:
        """The options that depend on how many processes train: the batch split over them, and the options that
        need one process (the automatic batch, --image-weights)."""
        config, world = self.config, self.context.world_size
        if config.batch == AUTO_BATCH and self.context.enabled:
            raise UserError(f"--batch {AUTO_BATCH} (automatic) needs one process; give the total batch for DDP")
        if config.batch != AUTO_BATCH and self.batch_size < 1:
            raise UserError(f"--batch {config.batch} is smaller than the {world} processes")
        if config.image_weights and (self.context.enabled or config.rect):
            raise UserError("--image-weights draws the images of one process at random: not with DDP or --rect")

    def fit_to_model(self) -> None:
        """What depends on the built model: the image size rounded up to a multiple of its stride (as YOLOv5's
        check_img_size), the automatic batch size (``--batch -1``), the frozen layers (``--freeze``)."""
        config, img = self.config, self.config.img
        assert img is not None  # filled in by with_defaults
        if img % self.stride:
            new = math.ceil(img / self.stride) * self.stride
            self.log(f"--img {img} is not a multiple of the max stride {self.stride}; using {new}", logging.WARNING)
            img, config = new, dataclasses.replace(config, img=new)
            self.config = config
        if config.batch == AUTO_BATCH:
            self.world_batch = self.batch_size = auto_batch_size(self.model, img, self.device)
            self.config = dataclasses.replace(config, batch=self.batch_size)
        frozen = freeze_layers(self.model, config.freeze)
        if frozen:
            span = f"{frozen[0]}..{frozen[-1]}" if frozen == list(range(len(frozen))) else ", ".join(map(str, frozen))
            self.log(f"--freeze: layers {span} frozen")

    def load_hyp(self) -> dict[str, Any]:
        if self.resume_checkpoint is not None and self.resume_checkpoint.get("hyp"):
            return dict(self.resume_checkpoint["hyp"])
        assert self.config.hyp is not None  # filled in by with_defaults
        hyp = read_yaml_mapping(self.config.hyp, "hyperparameter YAML")
        hyp["label_smoothing"] = self.config.label_smoothing
        return hyp

    def make_run_dir(self) -> None:
        config = self.config
        save_dir = config.save_dir or increment_path(Path(config.project) / config.name, config.exist_ok).resolve()
        self.config = dataclasses.replace(config, save_dir=str(save_dir))
        self.save_dir, self.weights_dir = Path(save_dir), Path(save_dir) / "weights"
        if self.is_main:
            self.weights_dir.mkdir(parents=True, exist_ok=True)
        self.write_options()

    def write_options(self) -> None:
        """hyp.yaml and opt.yaml in the run folder (main process), once :meth:`make_run_dir` has made it."""
        if self.is_main and self.weights_dir.is_dir() and self.weights_dir != Path():
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
            model = build_model(model_source(config), nc=nc)  # no weights: the cfg
        model.names = list(self.data.names)
        return model.to(self.device), new_layers

    def log_model_summary(self) -> None:
        """The layer table and totals, as ``yolo-attn info`` prints them (GFLOPs at the training size)."""
        if self.is_main:
            assert self.config.img is not None  # filled in by with_defaults
            totals = summarize(self.model, self.config.img)
            self.log(f"{layer_table(self.model)}\n{Path(model_source(self.config)).stem} summary: "
                     f"{totals.layers} layers, {totals.params:,} parameters, {totals.gflops:.2f} GFLOPs at "
                     f"{self.config.img} px")

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
        """(loader, dataset) of ``split``: the augmented train loader (drawing from :attr:`augment_rng`; with
        --image-weights, from a :class:`WeightedImageSampler`) or the rectangular val loader; images cached as
        --cache asks."""
        config, source, prefix = self.config, self.data.split(split), f"{split}: "
        assert config.img is not None  # filled in by with_defaults
        dataset: DetectionDataset
        if augment:
            hyp = self.hyp if mosaic else {**self.hyp, "mosaic": 0.0}
            dataset = TrainDataset(source, config.img, self.batch_size, rect=config.rect, stride=self.stride, hyp=hyp,
                                   prefix=prefix, seed=self.augment_rng, single_cls=config.single_cls)
            if config.cache:
                dataset.cache_images(config.cache)
            sampler = None
            if config.image_weights:
                sampler = WeightedImageSampler(image_weights(dataset.labels, self.data.nc), config.seed)
            return create_dataloader(dataset, self.batch_size, config.workers, shuffle=not config.rect,
                                     seed=config.seed, rank=self.context.rank, sampler=sampler), dataset
        dataset = DetectionDataset(source, config.img, self.batch_size * 2, rect=True, stride=self.stride, pad=RECT_PAD,
                                   prefix=prefix, single_cls=config.single_cls)
        if config.cache:
            dataset.cache_images(config.cache)
        return create_dataloader(dataset, self.batch_size * 2, config.workers * 2, seed=config.seed), dataset

    def check_dataset(self, train_dataset: TrainDataset) -> None:
        """Label plot and AutoAnchor (anchor-based heads) on a fresh run; anchors shared with every process."""
        anchor_based = head_contract(self.model.head).anchor_based
        head = cast(AnchorBasedHead, self.model.head)  # used only where its contract is anchor_based
        if self.resume_checkpoint is None and self.is_main:
            if not self.config.noplots:
                results.plot_labels(train_dataset.labels, self.data.names, self.save_dir / "labels.jpg")
            if not self.config.noautoanchor and anchor_based:
                assert self.config.img is not None  # filled in by with_defaults
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
        assert config.optimizer is not None and config.epochs is not None and config.img is not None  # with_defaults
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
            self.log(f"resuming {config.resume} after epoch {self.state.epoch + 1}")
        self.state.scheduler.last_epoch = self.state.epoch
        loss_hyp = scale_loss_gains(hyp, cast(DetectionHead, head).nl, self.data.nc, config.img)
        self.compute_loss = build_loss(head, loss_hyp, config.loss)
        self.val_loss = build_loss(self.ema_model.head, loss_hyp, for_eval=True) if self.is_main else None
        self.train_model = wrap_model(self.model, self.context, config.sync_bn and self.context.enabled)
        self._guard = NonFiniteGuard(self.model, config.nonfinite_patience, self.amp, self.context.enabled)
        if self.resume_checkpoint is not None:
            self.guard.saved(str(config.resume), self.state.epoch)

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any] | None:
        try:
            return self._run()
        except KeyboardInterrupt:
            raise TrainingInterrupted(self.resume_hint()) from None
        finally:
            self.tensorboard.close()
            cleanup(self.context)

    def resume_hint(self) -> str:
        """What an interrupted run leaves: its last checkpoint and the command that resumes it."""
        last = self.weights_dir / "last.pt"
        if self.weights_dir != Path() and last.is_file():  # weights_dir is Path() until the run folder exists
            return f"interrupted; resume from the last checkpoint: yolo-attn train --resume {shlex.quote(str(last))}"
        return "interrupted before the first checkpoint was saved; nothing to resume"
    def deterministic(self) -> contextlib.AbstractContextManager:
        """--deterministic: the full flag while training, once every layer passed a run under it (forward and
        backward on two random images of the training size); else nothing."""
        if not self.config.deterministic:
            return contextlib.nullcontext()
        generator = torch.Generator(self.device).manual_seed(0)  # leaves the process-wide streams as they are
        assert self.config.img is not None  # filled in by with_defaults
        images = torch.rand(2, 3, self.config.img, self.config.img, device=self.device, generator=generator)
        return deterministic_training(self.model, images)

    def cpu_threads(self) -> ThreadGovernor:
        """--threads: a fixed team, or one the governor fits to the free cores (CPU, not --deterministic)."""
        self.thread_governor = ThreadGovernor(self.device.type == "cpu" and not self.config.deterministic,
                                              fixed=self.config.threads)
        return self.thread_governor

    def _run(self) -> dict[str, Any] | None:
        self.setup()
        config = self.config
        assert config.epochs is not None  # filled in by with_defaults
        start_epoch = int(self.resume_checkpoint["epoch"]) + 1 if self.resume_checkpoint is not None else 0
        train_loader, train_dataset = self.make_loader("train", True, mosaic=not self.mosaic_closed(start_epoch))
        val_loader = self.make_loader("val", augment=False)[0] if self.is_main else None
        self.make_run_dir()  # only now: a run that cannot start leaves no folder behind
        self.check_dataset(train_dataset)
        self.prepare_training(len(train_dataset))
        if self.is_main:
            results.truncate_results(self.save_dir / results.RESULTS_CSV, start_epoch)
            self.tensorboard = TensorBoardLogger(self.save_dir)
        self.log(
            f"training {Path(model_source(config)).name} on {config.data}: {len(train_dataset)} images, "
            f"{config.img} px, batch {self.world_batch}, {self.context.world_size} process(es) on {self.device}, "
            f"epochs {start_epoch + 1}..{config.epochs}, results in {self.save_dir}"
        )
        with self.deterministic(), self.cpu_threads():
            metrics = self.fit(train_loader, val_loader, start_epoch)
        if not self.is_main:
            return None
        self.strip_final_checkpoints()
        if metrics:
            self.log(f"last validation, epoch {self.state.epoch + 1}:\n{format_results(metrics, per_class=True)}")
        if not config.noplots:
            results.plot_results(self.save_dir / results.RESULTS_CSV)
            self.tensorboard.image_files([self.save_dir / name for name in FINAL_FIGURES], self.state.epoch + 1)
        return self.summary(metrics)

    def fit(self, train_loader, val_loader, start_epoch: int) -> dict[str, Any]:
        """The epoch loop; returns the last validation metrics (rank 0)."""
        config = self.config
        assert config.epochs is not None  # filled in by with_defaults
        metrics: dict[str, Any] = {}
        warmup_iters = warmup_iterations(self.hyp, len(train_loader))
        for epoch in range(start_epoch, config.epochs):
            set_epoch = getattr(self.compute_loss, "set_epoch", None)
            if callable(set_epoch):  # losses with a schedule (YOLOX's L1 tail)
                set_epoch(epoch, config.epochs)
            if self.mosaic_closed(epoch) and not self.mosaic_closed(epoch - 1) and epoch > start_epoch:
                self.log(f"closing mosaic for the last {config.close_mosaic} epochs")
                train_loader, _ = self.make_loader("train", augment=True, mosaic=False)
            if isinstance(train_loader.sampler, WeightedImageSampler):  # --image-weights: by the last val's mAPs
                train_loader.sampler.weights = image_weights(train_loader.dataset.labels, self.data.nc,
                                                             metrics.get("maps"))
                train_loader.sampler.set_epoch(epoch)
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
                             f"(best epoch {self.state.stopper.best_epoch + 1})")
                break
        return metrics

    def end_epoch(self, epoch: int, mean_losses: list[float], lrs: list[float], val_loader,
                  metrics: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Rank 0 after an epoch: validate, log results.csv, save; returns (metrics, whether to stop)."""
        final_epoch = epoch + 1 == self.config.epochs
        state = self.state
        assert state.ema is not None  # rank 0 keeps the EMA
        state.ema.update_attributes(self.model)
        if not self.config.noval or final_epoch:
            metrics = self.validate(val_loader, final_epoch)
            self.log(f"{TABLE_HEADER}\n{table_row('all', metrics)}")
        fit = fitness(float(metrics.get("map50", 0.0)), float(metrics.get("map50_95", 0.0)))
        stop = state.stopper(epoch, fit)
        state.best_fitness, state.epoch = max(state.best_fitness, fit), epoch
        row = results.epoch_row(epoch + 1, mean_losses, metrics, lrs, self.compute_loss.item_names,
                                skipped_steps=self.guard.epoch_skips)
        results.append_results_row(self.save_dir / results.RESULTS_CSV, row)
        self.tensorboard.scalars(row, epoch + 1)
        if not self.config.nosave or final_epoch:
            self.save(is_best=fit == state.best_fitness)
        return metrics, stop or final_epoch

    def mosaic_closed(self, epoch: int) -> bool:
        epochs = self.config.epochs
        assert epochs is not None  # filled in by with_defaults
        return self.config.close_mosaic > 0 and epoch >= epochs - self.config.close_mosaic

    def train_one_epoch(self, epoch: int, loader, warmup_iters: int) -> list[float]:
        """One pass over the training set; returns the mean loss items."""
        config, state, batches = self.config, self.state, len(loader)
        assert config.epochs is not None  # filled in by with_defaults
        self.train_model.train()
        # Shuffle order and worker seeds depend on the epoch only, so a resumed run repeats them.
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        if loader.generator is not None:
            loader.generator.manual_seed((config.seed + epoch) * self.context.world_size + max(self.context.rank, 0))
        mean_losses, finite_steps = None, 0
        self.log(results.progress_header(self.compute_loss.item_names))
        progress = tqdm(loader, desc=f"{epoch + 1}/{config.epochs}".rjust(11), total=batches, leave=True,
                        mininterval=1.0, disable=not (self.is_main and LOGGER.isEnabledFor(logging.INFO)),
                        bar_format="{l_bar}{bar:10}{r_bar}")
        state.optimizer.zero_grad()
        self.guard.start_epoch()
        for i, (images, targets, _paths, _shapes) in enumerate(progress):
            iteration = i + batches * epoch
            if iteration <= warmup_iters:
                apply_warmup(state.optimizer, iteration, warmup_iters, self.lr_factor(epoch), self.hyp)
            images = images.to(self.device, non_blocking=True).float() / 255
            if config.multi_scale:
                images = self.multi_scale(images, iteration)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            loss_items = self.train_step(images, targets, epoch, iteration, warmup_iters)
            self.thread_governor.update()
            if loss_items is None:  # a non-finite loss: skipped, and left out of the epoch's mean
                continue
            mean_losses = loss_items if mean_losses is None else (mean_losses * finite_steps + loss_items) / (
                finite_steps + 1)
            finite_steps += 1
            if self.is_main:
                memory = torch.cuda.memory_reserved(self.device) / 1e9 if self.device.type == "cuda" else 0.0
                progress.set_description(results.progress_columns(epoch + 1, config.epochs, memory,
                                                                  mean_losses.tolist(), targets.shape[0],
                                                                  images.shape[-1]), refresh=False)
                if epoch == 0 and i < PLOTTED_BATCHES and not config.noplots and self.resume_checkpoint is None:
                    self.plot_train_batch(i, images, targets)
        return mean_losses.tolist() if mean_losses is not None else [0.0] * len(self.compute_loss.item_names)

    def multi_scale(self, images: torch.Tensor, iteration: int) -> torch.Tensor:
        """YOLOv5's --multi-scale: the batch resized (bilinear) so that its long side is a random multiple of the
        stride in 0.5..1.5 x --img, drawn from (seed, rank, iteration) so that a resumed run repeats it."""
        img, stride = self.config.img, self.stride
        assert img is not None  # filled in by with_defaults
        rng = np.random.default_rng((self.config.seed, max(self.context.rank, 0), iteration))
        size = max(int(rng.integers(int(img * 0.5), int(img * 1.5) + stride)) // stride * stride, stride)
        factor = size / max(images.shape[2:])
        if factor == 1:
            return images
        shape = [math.ceil(side * factor / stride) * stride for side in images.shape[2:]]
        return nn.functional.interpolate(images, size=shape, mode="bilinear", align_corners=False)

    def plot_train_batch(self, index: int, images: torch.Tensor, targets: torch.Tensor) -> None:
        """``train_batch{index}.jpg``, also in TensorBoard."""
        boxes = results.label_boxes(targets, len(images), *images.shape[2:])
        mosaic = results.plot_batch(images, boxes, self.data.names, self.save_dir / f"train_batch{index}.jpg")
        self.tensorboard.image(f"train_batch{index}", mosaic, 1)

    def train_step(self, images: torch.Tensor, targets: torch.Tensor, epoch: int, iteration: int,
                   warmup_iters: int) -> torch.Tensor | None:
        """Forward, backward and (every ``accumulate`` batches) an optimiser step with EMA update; a non-finite
        loss or gradient skips the step (:class:`~yolo_attn.engine.nonfinite.NonFiniteGuard`). Returns the loss
        items, None when the loss was non-finite."""
        state, guard = self.state, self.guard
        accumulate = accumulation_steps(iteration, warmup_iters, self.world_batch, self.nominal_batch)
        guard.before_forward()
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            loss, loss_items = self.compute_loss(self.train_model(images), targets.to(self.device))
        if self.context.enabled:
            loss = loss * self.context.world_size  # DDP averages gradients over processes
        if not guard.loss_is_finite(loss):
            guard.skip(state.optimizer, "loss", images, epoch, iteration)
            state.last_opt_step = iteration  # the accumulation window starts again
            return None
        state.scaler.scale(loss).backward()
        if iteration - state.last_opt_step >= accumulate:
            state.scaler.unscale_(state.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=10.0)
            if guard.gradients_are_finite(norm):
                state.scaler.step(state.optimizer)
                state.scaler.update()
                state.optimizer.zero_grad()
                if state.ema is not None:
                    state.ema.update(self.model)
                guard.stepped()
            else:
                state.scaler.update()  # AMP: the scale backs off, as after a step the scaler skips itself
                guard.skip(state.optimizer, "gradient", images, epoch, iteration)
            state.last_opt_step = iteration
        return loss_items

    def validate(self, val_loader, final_epoch: bool) -> dict[str, Any]:
        """The EMA weights on the val split, through a fused copy (Conv+BN folded: ~10% faster)."""
        model = copy.deepcopy(self.ema_model).fuse()
        config = EvalConfig(conf_thres=0.001, iou_thres=0.6, device=self.device, half=self.amp, save_dir=self.save_dir,
                            plots=final_epoch and not self.config.noplots, coco=False,
                            progress=LOGGER.isEnabledFor(logging.INFO))
        return evaluate(model, config=config, dataloader=val_loader, names=list(self.data.names),
                        compute_loss=self.val_loss)

    def save(self, is_best: bool) -> None:
        """Write the checkpoints atomically with everything resume needs, last.pt last (a kill before it repeats
        the epoch, rewriting the others the same), the last.pt it replaces kept as last.prev.pt; never weights
        with a NaN or infinity. A failed write stops the run with the checkpoints as they were."""
        state, last = self.state, self.weights_dir / "last.pt"
        check_finite_weights(self.model, self.ema_model, state.epoch, self.guard.last_good)
        checkpoint = make_checkpoint(
            self.model, names=list(self.data.names), ema=self.ema_model, training=state.state_dict(),
            epoch=state.epoch, best_fitness=state.best_fitness, hyp=self.hyp,
            train_args=dataclasses.asdict(self.config),
        )
        try:
            if self.config.save_period > 0 and (state.epoch + 1) % self.config.save_period == 0:
                save_checkpoint(self.weights_dir / f"epoch{state.epoch + 1}.pt", checkpoint)
            if is_best:
                save_checkpoint(self.weights_dir / "best.pt", checkpoint)
            save_checkpoint(last, checkpoint, keep_previous=True)
        except CheckpointWriteError as e:
            raise CheckpointWriteError(f"training stopped after epoch {state.epoch + 1}: {e}; last good checkpoint: "
                                       f"{self.guard.last_good}") from None
        self.guard.saved(last, state.epoch)

    def strip_final_checkpoints(self) -> None:
        """Training done: best.pt and last.pt keep the EMA weights only, without the optimizer (YOLOv5's
        strip_optimizer); the checkpoints saved during training keep everything resume needs."""
        for path in (self.weights_dir / "best.pt", self.weights_dir / "last.pt"):
            if path.is_file():
                save_checkpoint(path, strip_optimizer(load_checkpoint(path)))

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


def train(config: TrainConfig | None = None, **options: Any) -> dict[str, Any] | None:
    """Train and return the summary (``map50``, ``map50_95``, ``precision``, ``recall``, ``epochs``, ``wall_s``,
    ``best``, ``last``, ``save_dir``; None in the DDP processes but rank 0). ``options`` are :class:`TrainConfig`
    fields overriding ``config``."""
    return Trainer(dataclasses.replace(config or TrainConfig(), **options)).run()
