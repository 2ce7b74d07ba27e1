"""Where a detector looks: class-activation maps on the detections and the attention blocks' own gates
(``yolo-attn cam``; the figure is drawn by :mod:`yolo_attn.engine.cam_figure`).

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, arXiv 1610.02391) weights a layer's channels by the mean gradient of the
target; HiResCAM (Draelos & Carin, arXiv 2011.08891, 2020) multiplies gradient and activation
element-wise; Eigen-CAM (Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal
Components", IJCNN 2020, arXiv 2008.00299) projects the activations on their first principal direction
and needs no target. The target is the summed score of the detections NMS keeps (or those of one
class), read through the head's contract: ``obj * cls`` for heads with objectness, ``cls`` otherwise.

Written here rather than through pytorch-grad-cam: each method is a few lines once hooks hold the
activations, while the package would add ttach, scikit-learn and scipy, needs a wrapper for a detection
model's ``(decoded, raw)`` output, and rescales every layer's map to the letterboxed input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torchvision.ops import batched_nms

from yolo_attn.checkpoint import LoadedModel, load_model
from yolo_attn.data.config import load_dataset_config
from yolo_attn.data.dataset import IMAGE_SUFFIXES, list_yolo_images
from yolo_attn.engine.cam_figure import method_name, render_figure
from yolo_attn.engine.predictor import END_TO_END_MIN_CANDIDATES, image_paths, preprocess
from yolo_attn.errors import UserError
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.heads import check_nms_free, configure_end_to_end, head_contract
from yolo_attn.nn.model import DetectionModel, max_stride, model_device, tagged
from yolo_attn.nn.registry import all_blocks
from yolo_attn.utils.boxes import scale_boxes, xywh2xyxy
from yolo_attn.utils.paths import increment_path


def grad_cam(activation: torch.Tensor, gradient: torch.Tensor | None) -> torch.Tensor:
    """Grad-CAM: ``relu(sum_c mean_hw(dS/dA_c) * A_c)`` for one ``(c, h, w)`` activation."""
    assert gradient is not None  # only GRADIENT_FREE methods are called without one
    return F.relu((gradient.mean((1, 2), keepdim=True) * activation).sum(0))


def hires_cam(activation: torch.Tensor, gradient: torch.Tensor | None) -> torch.Tensor:
    """HiResCAM: ``relu(sum_c dS/dA_c * A_c)``, faithful to the gradient at every position."""
    assert gradient is not None  # only GRADIENT_FREE methods are called without one
    return F.relu((gradient * activation).sum(0))


def eigen_cam(activation: torch.Tensor, gradient: torch.Tensor | None = None) -> torch.Tensor:
    """Eigen-CAM: the activations ``(hw, c)`` projected on their first right singular vector, signed so
    that the map sums positive; ``gradient`` is unused."""
    flat = activation.flatten(1).T
    direction = torch.linalg.svd(flat, full_matrices=False).Vh[0]
    projection = (flat @ direction).view(activation.shape[1:])
    return F.relu(projection if projection.sum() >= 0 else -projection)


CamMethod = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
METHODS: dict[str, CamMethod] = {"gradcam": grad_cam, "hirescam": hires_cam, "eigencam": eigen_cam}
GRADIENT_FREE = {"eigencam"}


@dataclass(frozen=True)
class CamSettings:
    """What to explain. ``layers``: layer indices for the CAM (None: the layers feeding the head);
    ``blocks``: attention layers whose gates to show (None: every layer that hands gates out);
    ``class_name``: explain that class's detections instead of all of them."""

    layers: tuple[int, ...] | None = None
    method: str = "gradcam"
    class_name: str | None = None
    blocks: tuple[int, ...] | None = None
    img_size: int = 640
    conf: float = 0.25
    iou: float = 0.45
    device: str = ""
    nms_free: bool = False  # EvalConfig.nms_free: the one-to-one detections of an end-to-end head


@dataclass(frozen=True)
class CamConfig:
    """``yolo-attn cam``: models (one figure row each) and images (one figure each)."""

    weights: tuple[str, ...]
    source: str
    settings: CamSettings = CamSettings()
    project: str = "runs/cam"
    name: str = "exp"
    exist_ok: bool = False
    dpi: int = 100


@dataclass
class Explanation:
    """One model on one image; every map is at the image's own size (letterbox undone), ``(h, w)`` floats."""

    label: str
    detections: np.ndarray  # (n, 6): x1, y1, x2, y2, score, class in image pixels
    names: list[str]
    target: str
    cams: dict[int, np.ndarray]  # layer -> CAM normalised to [0, 1]
    layer_types: dict[int, str]
    spatial_gates: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (title, gate values)
    channel_gate: tuple[str, np.ndarray] | None = None  # (title, per-channel weights) of one layer
    target_class: int | None = None

    @property
    def target_boxes(self) -> np.ndarray:
        """The detections the CAM explains: all, or those of ``target_class``."""
        if self.target_class is None:
            return self.detections
        return self.detections[self.detections[:, 5] == self.target_class]


def box_means(heatmap: np.ndarray, detections: np.ndarray) -> dict[str, float | None]:
    """Mean of ``heatmap`` inside the union of the detected boxes, outside it, and their ratio
    (None where a region is empty or the outside mean is 0)."""
    inside = np.zeros(heatmap.shape, dtype=bool)
    for x1, y1, x2, y2 in np.asarray(detections)[:, :4].round().astype(int):
        inside[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = True
    mean_in = float(heatmap[inside].mean()) if inside.any() else None
    mean_out = float(heatmap[~inside].mean()) if (~inside).any() else None
    ratio = mean_in / mean_out if mean_in is not None and mean_out else None
    return {"mean_in": mean_in, "mean_out": mean_out, "in_out_ratio": ratio}


def head_inputs(model: DetectionModel) -> list[int]:
    """The layers feeding the detection head (its ``f``; the lead levels only for heads with auxiliaries)."""
    head = model.head
    read = tagged(head).f
    sources = [read] if isinstance(read, int) else list(read)
    return [len(model.model) - 1 + j if j < 0 else j for j in sources[: getattr(head, "nl", len(sources))]]


def check_layers(model: DetectionModel, layers: Sequence[int], label: str) -> list[int]:
    """``layers`` checked to be feature layers of ``model`` (not the head)."""
    last = len(model.model) - 2
    for index in layers:
        if not 0 <= index <= last:
            raise UserError(f"--layer {index}: {label} has layers 0..{last} before its head")
    return list(layers)


def class_index(names: Sequence[str], class_name: str | None, label: str) -> int | None:
    """The index of ``class_name`` (a name, or an index written as a number) in the model's classes."""
    if class_name is None:
        return None
    if class_name in names:
        return list(names).index(class_name)
    if class_name.isdigit() and int(class_name) < len(names):
        return int(class_name)
    shown = ", ".join(list(names)[:10]) + (", ..." if len(names) > 10 else "")
    raise UserError(f"--class {class_name}: not a class of {label} ({shown})")


@dataclass
class DetectionTarget:
    """The CAM target on a decoded ``(1, n, 4 [+ 1] + nc)`` output: the summed score of the boxes NMS keeps
    (of class ``cls`` only when given; the best-scoring box when none is kept). ``end_to_end``: the output is an
    end-to-end head's final ``(1, k, 6)`` rows (x1, y1, x2, y2, score, class), kept above ``conf`` without NMS."""

    objectness: bool
    conf: float = 0.25
    iou: float = 0.45
    cls: int | None = None
    names: Sequence[str] = ()
    end_to_end: bool = False

    def _scored(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(xyxy boxes, best scores, labels, kept row indices, each row's score for the target class)."""
        if self.end_to_end:
            boxes, score, label = rows[:, :4], rows[:, 4], rows[:, 5].long()
            keep = (score > self.conf).nonzero()[:, 0]
            return boxes, score, label, keep, score if self.cls is None else torch.where(label == self.cls, score, 0)
        class_scores = rows[:, 5:] * rows[:, 4:5] if self.objectness else rows[:, 4:]
        score, label = class_scores.max(1)
        boxes = xywh2xyxy(rows[:, :4])
        keep = (score > self.conf).nonzero()[:, 0]
        keep = keep[batched_nms(boxes[keep].detach(), score[keep].detach(), label[keep], self.iou)]
        return boxes, score, label, keep, score if self.cls is None else class_scores[:, self.cls]

    def __call__(self, decoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
        """(target score, kept detections ``(k, 6)`` in input pixels, what the target is)."""
        boxes, score, label, keep, target_scores = self._scored(decoded[0])
        detections = torch.cat((boxes, score[:, None], label[:, None].float()), 1)[keep].detach()
        wanted = keep if self.cls is None else keep[label[keep] == self.cls]
        class_text = self.names[self.cls] if self.cls is not None and self.names else self.cls
        what = "all detections" if self.cls is None else f"{class_text} detections"
        if not len(wanted):
            wanted = target_scores.argmax()[None]
            what = f"best box, score {float(target_scores[wanted].detach()):.2g} (none above conf)"
        return target_scores[wanted].sum(), detections, what


def undo_letterbox(heatmap: torch.Tensor, input_hw: tuple[int, int], image_hw: tuple[int, int]) -> np.ndarray:
    """A ``(h, w)`` map over the letterboxed input -> the same map over the original image."""
    (height, width), (h0, w0) = input_hw, image_hw
    full = F.interpolate(heatmap[None, None].float(), size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    ratio = min(height / h0, width / w0)
    new_h, new_w = round(h0 * ratio), round(w0 * ratio)
    top, left = round((height - new_h) / 2 - 0.1), round((width - new_w) / 2 - 0.1)
    crop = full[top : top + new_h, left : left + new_w].cpu().numpy()
    return cv2.resize(crop, (w0, h0), interpolation=cv2.INTER_LINEAR)


def normalised(heatmap: np.ndarray) -> np.ndarray:
    peak = float(heatmap.max())
    return heatmap / peak if peak > 0 else heatmap


@dataclass(frozen=True)
class CapturedGate:
    """One gate applied in one forward pass: where (``layer``: index of the model's top-level layer, ``path`` of the
    :class:`~yolo_attn.nn.attention._gates.Gate` module, ``block``: class name of the attention block holding it),
    its ``kind`` and the detached gate, in the layout of the features it multiplies."""

    layer: int | None
    path: str
    block: str
    kind: str
    gate: torch.Tensor

    def spatial_map(self) -> torch.Tensor:
        """The gate averaged over channels: ``(b, h, w)`` (a row or column profile for a ``(b, c, h, 1)`` gate)."""
        return self.gate.mean(1)

    def channel_weights(self) -> torch.Tensor:
        """``(b, c)``: the gate averaged over positions."""
        return self.gate.mean((2, 3))


def _layer_index(model: nn.Module, path: str) -> int | None:
    parts = path.split(".")
    if len(parts) >= 2 and parts[0] == "model" and parts[1].isdigit() and hasattr(model, "model"):
        return int(parts[1])
    return None


def _holder(modules: dict[str, nn.Module], path: str, blocks: set[type]) -> str:
    """Class name of the nearest module above ``path`` that is a registered block (else of the gate's parent)."""
    parts = path.split(".")
    above = [type(modules[".".join(parts[:end])]) for end in range(len(parts) - 1, -1, -1)]
    return next((cls for cls in above if cls in blocks), above[0]).__name__


def _gate_kinds(modules: dict[str, nn.Module]) -> dict[str, str]:
    """Path -> kind of every gate: the :class:`Gate` submodules, and the submodules a block class names in its
    ``attention_gates`` (``{path below the block: kind}``, as plain-PyTorch plugins declare them)."""
    kinds = {path: module.kind for path, module in modules.items() if isinstance(module, Gate)}
    for path, module in modules.items():
        for below, kind in getattr(type(module), "attention_gates", {}).items():
            kinds[f"{path}.{below}" if path else below] = kind
    return {path: kind for path, kind in kinds.items() if path in modules}


def gate_modules(model: nn.Module) -> list[tuple[int | None, str, str, nn.Module, str]]:
    """Every gate submodule of ``model``: (top-level layer index, path, holding block's class name, the module whose
    output is the gate, its kind)."""
    blocks = {spec.cls for spec in all_blocks()}
    modules = dict(model.named_modules())
    return [(_layer_index(model, path), path, _holder(modules, path, blocks), modules[path], kind)
            for path, kind in _gate_kinds(modules).items()]


def gate_layers(model: nn.Module) -> dict[int, str]:
    """Top-level layer index -> class name of the first gated block in it, for every layer of ``model`` with gates."""
    found: dict[int, str] = {}
    for layer, _, block, _, _ in gate_modules(model):
        if layer is not None:
            found.setdefault(layer, block)
    return found


@contextmanager
def capture_gates(model: nn.Module) -> Iterator[list[CapturedGate]]:
    """Record the output of every gate submodule of ``model`` (forward hooks) while inside, in forward order;
    several forwards append in turn. The hooks are removed on exit."""
    gates: list[CapturedGate] = []

    def recorder(layer: int | None, path: str, block: str, kind: str) -> Callable:
        return lambda module, inputs, output: gates.append(CapturedGate(layer, path, block, kind, output.detach()))

    handles = [gate.register_forward_hook(recorder(layer, path, block, kind))
               for layer, path, block, gate, kind in gate_modules(model)]
    try:
        yield gates
    finally:
        for handle in handles:
            handle.remove()


def forward_with_hooks(model: DetectionModel, x: torch.Tensor, layers: Sequence[int]):
    """One forward with gradients on, recording the ``layers``' outputs and the attention gates."""
    activations: dict[int, torch.Tensor] = {}

    def keeper(index: int):
        return lambda module, inputs, output: activations.__setitem__(index, output)

    hooks = [model.model[i].register_forward_hook(keeper(i)) for i in layers]
    try:
        with torch.enable_grad(), capture_gates(model) as gates:
            output = model(x.requires_grad_(True))
    finally:
        for hook in hooks:
            hook.remove()
    for i in layers:
        if not isinstance(activations[i], torch.Tensor) or activations[i].ndim != 4:
            raise UserError(f"--layer {i}: {type(model.model[i]).__name__} does not output one feature map")
    return (output[0] if isinstance(output, (tuple, list)) else output), activations, gates


def explain(loaded: LoadedModel, label: str, image: np.ndarray, settings: CamSettings) -> Explanation:
    """CAMs of ``loaded`` on one BGR image for its detections, and the gates of its attention blocks."""
    model = loaded.model
    layers = check_layers(model, settings.layers, label) if settings.layers else head_inputs(model)
    contract = head_contract(model.head)
    nms_free = configure_end_to_end(model, END_TO_END_MIN_CANDIDATES, nms_free=settings.nms_free)  # as predict
    target = DetectionTarget(contract.objectness, settings.conf, settings.iou,
                             class_index(loaded.names, settings.class_name, label), loaded.names, nms_free)
    stride = max_stride(model)
    x = preprocess(image, math.ceil(settings.img_size / stride) * stride, stride, model_device(model))
    decoded, activations, gates = forward_with_hooks(model, x, layers)
    score, detections, what = target(decoded)
    features = [activations[i] for i in layers]
    if settings.method in GRADIENT_FREE:
        gradients: Sequence[torch.Tensor | None] = [None] * len(layers)
        what = f"none ({settings.method} is class-agnostic)"
    else:
        found = torch.autograd.grad(score, features, allow_unused=True)  # None: a layer the target does not use
        gradients = [torch.zeros_like(a[0]) if g is None else g[0] for a, g in zip(features, found, strict=True)]
    input_hw, image_hw = (x.shape[2], x.shape[3]), (image.shape[0], image.shape[1])
    method = METHODS[settings.method]
    cams = {i: normalised(undo_letterbox(method(a[0].detach(), g), input_hw, image_hw))
            for i, a, g in zip(layers, features, gradients, strict=True)}
    detections[:, :4] = scale_boxes(input_hw, detections[:, :4], image_hw)
    explanation = Explanation(label, detections.cpu().numpy(), list(loaded.names), what, cams,
                              {i: type(model.model[i]).__name__ for i in layers}, target_class=target.cls)
    add_gates(explanation, gates, settings.blocks, input_hw, image_hw)
    return explanation


def add_gates(explanation: Explanation, gates: list[CapturedGate], blocks: tuple[int, ...] | None,
              input_hw: tuple[int, int], image_hw: tuple[int, int]) -> None:
    """The spatial gates (upsampled to the image) and the first channel gate of the chosen layers."""
    for gate in gates:
        if blocks is not None and gate.layer not in blocks:
            continue
        where = f"layer {gate.layer} {gate.block}" if gate.layer is not None else gate.block
        if gate.kind == "spatial":
            values = undo_letterbox(gate.spatial_map()[0], input_hw, image_hw)
            explanation.spatial_gates.append((f"{where} spatial gate", values))
        elif explanation.channel_gate is None:
            explanation.channel_gate = (f"{where} channel gates", gate.channel_weights()[0].float().cpu().numpy())


def check_blocks(models: Sequence[tuple[str, LoadedModel]], blocks: Sequence[int] | None) -> None:
    """Every ``--block`` index must hold an attention block that hands out gates in at least one model."""
    found = {label: gate_layers(loaded.model) for label, loaded in models}
    for index in blocks or ():
        if not any(index in layers for layers in found.values()):
            listed = "; ".join(f"{label}: " + (", ".join(f"{i} {name}" for i, name in layers.items()) or "none")
                               for label, layers in found.items())
            raise UserError(f"--block {index}: no attention block with a map to show there "
                            f"(layers with maps: {listed})")


def model_labels(weights: Sequence[str | Path]) -> list[str]:
    """Row labels: the file's stem, or its run folder for ``<run>/weights/best.pt``; made unique."""
    labels: list[str] = []
    for w in map(Path, weights):
        in_run = w.stem in ("best", "last") and w.parent.name == "weights" and w.parent.parent.name
        label = w.parent.parent.name if in_run else w.stem
        labels.append(label if label not in labels else f"{label} ({len(labels) + 1})")
    return labels


def load_models(weights: Sequence[str | Path], device: str = "", labels: Sequence[str] | None = None,
                nms_free: bool = False) -> list[tuple[str, LoadedModel]]:
    """(row label, loaded model) per checkpoint; ``nms_free`` is refused for a model whose head is not end-to-end."""
    if not weights:
        raise UserError("--weights: give at least one checkpoint")
    labels = list(labels) if labels is not None else model_labels(weights)
    models = [(label, load_model(w, device=device, fuse=True)) for label, w in zip(labels, weights, strict=True)]
    for _, loaded in models:
        check_nms_free(loaded.model, nms_free)
    return models


def read_image(path: str | Path) -> np.ndarray:
    """A BGR image; a clear error when the file is no readable image."""
    image = cv2.imread(str(path))
    if image is None:
        raise UserError(f"{path}: not a readable image")
    return image


def explain_all(models: Sequence[tuple[str, LoadedModel]], image: np.ndarray,
                settings: CamSettings) -> list[Explanation]:
    if settings.method not in METHODS:
        raise UserError(f"--method {settings.method}: choose one of {', '.join(METHODS)}")
    check_blocks(models, settings.blocks)
    return [explain(loaded, label, image, settings) for label, loaded in models]


def draw_cam_figure(weights_list: Sequence[str | Path], images: Sequence[str | Path], out_path: str | Path,
                    settings: CamSettings = CamSettings(), labels: Sequence[str] | None = None, dpi: int = 100,
                    title: str | None = None) -> Path:
    """One figure, one row per (image, model): detections, CAMs and attention gates side by side. ``title``
    defaults to the method and the number of images."""
    models = load_models(weights_list, settings.device, labels, settings.nms_free)
    rows = []
    for path in images:
        image = read_image(path)
        explanations = explain_all(models, image, settings)
        rows += [(image, replace(e, label=f"{e.label}\n{Path(path).name}")) for e in explanations]
    title = title or f"{method_name(settings.method)} on {count_of(len(images), 'image')}"
    return render_figure(rows, Path(out_path), title=title, dpi=dpi)


def run_cam(config: CamConfig) -> dict:
    """``yolo-attn cam``: one figure per image under ``project/name``; returns a summary per image and model."""
    paths = image_paths(config.source)
    images = [(p, read_image(p)) for p in paths]
    models = load_models(config.weights, config.settings.device, nms_free=config.settings.nms_free)
    save_dir = increment_path(Path(config.project) / config.name, config.exist_ok)
    save_dir.mkdir(parents=True, exist_ok=True)
    summary: dict = {"save_dir": str(save_dir), "figures": [], "images": {}}
    for path, image in images:
        explanations = explain_all(models, image, config.settings)
        figure = render_figure([(image, e) for e in explanations], save_dir / f"{path.stem}.png",
                               title=f"{path.name}: {method_name(config.settings.method)}", dpi=config.dpi)
        summary["figures"].append(str(figure))
        summary["images"][str(path)] = {e.label: describe(e) for e in explanations}
    return summary


def describe(explanation: Explanation) -> dict:
    """The JSON-ready facts of one explanation: detections, target, and per layer the CAM's means inside and
    outside the explained boxes."""
    return {
        "detections": len(explanation.detections),
        "target": explanation.target,
        "layers": {str(i): {"module": explanation.layer_types[i], **box_means(cam, explanation.target_boxes)}
                   for i, cam in explanation.cams.items()},
        "spatial_gates": [title for title, _ in explanation.spatial_gates],
        "channel_gates": explanation.channel_gate[0] if explanation.channel_gate else None,
    }


def validation_images(data: str | Path, n: int) -> list[Path]:
    """The first ``n`` images (sorted) of a dataset YAML's ``val`` split."""
    split = load_dataset_config(data).split("val")
    if split.layout == "yolo":
        return [Path(p) for p in list_yolo_images(split)[:n]]
    return sorted(p for p in split.sources[0].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:n]


def ablation_cam_figure(save_dir: Path, variants: Sequence[str], weights: Sequence[str | Path], n_images: int,
                        device: str = "", first_run: Path | None = None) -> Path:
    """``ablate --cam N``: every trained variant on the first ``N`` validation images in ``save_dir/cam.png``,
    linked from ``ablation.md``. Data and image size are those the first variant trained with (its run folder
    ``first_run``, by default ``save_dir/<first variant>``), whose model and seed the title names."""
    opt = yaml.safe_load(((first_run or save_dir / variants[0]) / "opt.yaml").read_text())
    settings = CamSettings(img_size=int(opt["img"]), device=device)
    on_images = f"on {count_of(n_images, 'validation image')}"
    model = Path(str(opt.get("cfg") or opt.get("weights") or variants[0])).name
    seed = f", seed {opt['seed']}" if "seed" in opt else ""
    figure = draw_cam_figure(weights, validation_images(opt["data"], n_images), save_dir / "cam.png", settings,
                             labels=variants, title=f"{method_name(settings.method)} of {model} and its variants"
                             f"{seed}, {on_images}")
    with open(save_dir / "ablation.md", "a", encoding="utf-8") as f:
        f.write(f"\n## Where the variants look\n\n"
                f"![{method_name(settings.method)} of every variant{seed}, {on_images}]({figure.name})\n")
    return figure


def count_of(n: int, noun: str) -> str:
    """``1 image``, ``2 images``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
