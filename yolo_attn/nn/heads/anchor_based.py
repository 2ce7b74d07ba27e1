"""Anchor-based detection heads: YOLOv5's Detect (ultralytics/yolov5 ``models/yolo.py``) and YOLOv7's
IDetect / IAuxDetect (WongKinYiu/yolov7 ``models/yolo.py``), which add YOLOR's implicit layers and
auxiliary heads to the same decoding."""

from __future__ import annotations

import math

import torch
from torch import nn

from yolo_attn.nn.blocks.implicit import ImplicitA, ImplicitM
from yolo_attn.nn.heads.contract import HeadContract
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import DETECT, DetectionHead


@register(rule=DetectionHead(without_anchors="AnchorFreeDetect"))
class Detect(nn.Module):
    """One 1x1 conv per level predicting ``na * (nc + 5)`` values. YAML: ``[nc, anchors]``; a ``Detect`` line
    with ``[nc]`` alone (Ultralytics' YOLOv8/11/12 YAMLs) builds the anchor-free head instead.

    Training returns the raw per-level maps ``(b, na, ny, nx, nc + 5)``; eval returns
    ``(decoded boxes (b, n, nc + 5) in input pixels, raw maps)``.
    """

    contract = HeadContract(default_loss="v5", losses=("v5", "ota"), eval_loss="v5")
    export = False  # set by the exporter: eval forward then returns only the decoded tensor
    anchors: torch.Tensor  # buffers
    stride: torch.Tensor

    def __init__(self, nc: int = 80, anchors=(), ch=(), inplace: bool = True):
        # ``inplace`` is accepted so YOLOv5 YAMLs that pass it build; decoding never writes in place.
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))
        self.register_buffer("stride", torch.ones(self.nl), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self._grids: dict[tuple[int, int, int, torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, xs: list[torch.Tensor]):
        raw = [self.level_output(i, x) for i, x in enumerate(xs)]
        if self.training:
            return raw
        decoded = torch.cat([self.decode(i, p) for i, p in enumerate(raw)], 1)
        return decoded if self.export else (decoded, raw)

    def level_output(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Raw predictions of level ``i`` reshaped to ``(b, na, ny, nx, no)``."""
        return self.split_anchors(self.predict(i, x))

    def predict(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """The output conv of level ``i``: ``(b, na * no, ny, nx)``."""
        return self.m[i](x)

    def split_anchors(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, na * no, ny, nx)`` -> ``(b, na, ny, nx, no)``."""
        bs, _, ny, nx = x.shape
        return x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()

    def decode(self, i: int, p: torch.Tensor) -> torch.Tensor:
        """Sigmoid and box decoding of one level: xy = (2s - 0.5 + grid) * stride, wh = (2s)^2 * anchor."""
        bs, _, ny, nx, _ = p.shape
        grid, anchor_grid = self.grid(i, nx, ny, p)
        y = p.sigmoid()
        xy, wh, conf = y.split((2, 2, self.nc + 1), 4)
        xy = (xy * 2 + grid) * self.stride[i]
        wh = (wh * 2) ** 2 * anchor_grid
        return torch.cat((xy, wh, conf), 4).view(bs, -1, self.no)

    def grid(self, i: int, nx: int, ny: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell offsets (minus 0.5) and anchor sizes in pixels for level ``i``, cached per shape."""
        key = (i, nx, ny, like.device, like.dtype)
        if key not in self._grids or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            yv, xv = torch.meshgrid(
                torch.arange(ny, device=like.device, dtype=like.dtype),
                torch.arange(nx, device=like.device, dtype=like.dtype),
                indexing="ij",
            )
            grid = torch.stack((xv, yv), 2).expand(1, self.na, ny, nx, 2) - 0.5
            anchor_grid = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2).expand(1, self.na, ny, nx, 2)
            self._grids[key] = (grid, anchor_grid.to(like.dtype))
        return self._grids[key]

    def bind_strides(self, stride: torch.Tensor) -> None:
        """Store strides, convert anchors from pixels to stride units (fixing their order) and init biases."""
        self.stride = stride.to(self.anchors.device)
        self.reset_grids()
        self.anchors /= self.stride.view(-1, 1, 1)
        area = self.anchors.prod(-1).view(-1)
        delta_area, delta_stride = area[-1] - area[0], self.stride[-1] - self.stride[0]
        if delta_area and delta_area.sign() != delta_stride.sign():
            self.anchors[:] = self.anchors.flip(0)
        self.initialize_biases()

    @torch.no_grad()
    def initialize_biases(self, class_frequency: torch.Tensor | None = None) -> None:
        """YOLOv5's priors: ~8 objects per 640 image per level; class prior 0.6/nc or class frequencies."""
        for conv, s in zip(self.m, self.stride, strict=True):
            self._add_bias_prior(conv, float(s), class_frequency)

    def _add_bias_prior(self, conv: nn.Module, stride: float, class_frequency: torch.Tensor | None) -> None:
        assert isinstance(conv.bias, torch.Tensor)  # an output conv, with bias
        b = conv.bias.view(self.na, -1)
        b[:, 4] += math.log(8 / (640 / stride) ** 2)
        if class_frequency is None:
            b[:, 5 : 5 + self.nc] += math.log(0.6 / (self.nc - 0.99999))
        else:
            b[:, 5 : 5 + self.nc] += torch.log(class_frequency / class_frequency.sum())

    def reset_grids(self) -> None:
        """Forget the cached decoding grids (anchors, strides, device or dtype changed)."""
        self._grids.clear()

    def _apply(self, fn, *args, **kwargs):
        self.reset_grids()
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        # Loaded anchors replace the ones the cached grids were computed from.
        self.reset_grids()
        super()._load_from_state_dict(*args, **kwargs)


@register(rule=DETECT)
class IDetect(Detect):
    """YOLOv7's head: Detect with YOLOR implicit layers, ``im[i](m[i](ia[i](x)))``. YAML: ``[nc, anchors]``.

    ``anchor_grid`` (anchors in pixels, ``(nl, 1, na, 1, 1, 2)``) is kept as a buffer so the
    ``state_dict`` matches YOLOv7's; decoding uses ``anchors * stride`` like Detect.
    """

    contract = HeadContract(default_loss="ota", losses=("ota", "v5"), eval_loss="v5", upstream="yolov7")
    anchor_grid: torch.Tensor  # buffer

    def __init__(self, nc: int = 80, anchors=(), ch=(), inplace: bool = True):
        super().__init__(nc, anchors, ch, inplace)
        self.register_buffer("anchor_grid", self.anchors.clone().view(self.nl, 1, -1, 1, 1, 2))
        self.ia = nn.ModuleList(ImplicitA(x) for x in ch)
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch)

    def predict(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.im[i](self.m[i](self.ia[i](x)))

    def bind_strides(self, stride: torch.Tensor) -> None:
        super().bind_strides(stride)
        self._sync_anchor_grid()

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold ``ia`` and ``im`` into the 1x1 convs: ``m * (W (x + a) + b) = (m W) x + m (W a + b)``.

        The implicit layers stay (as in YOLOv7, so keys and fused parameter counts match) but are reset
        to the identity (a = 0, m = 1), which also makes a second ``fuse()`` a no-op.
        """
        for conv, ia, im in zip(self.m, self.ia, self.im, strict=True):
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None
            assert isinstance(ia, ImplicitA) and isinstance(im, ImplicitM)
            conv.bias += conv.weight.flatten(1) @ ia.implicit.flatten()
            scale = im.implicit.flatten()
            conv.bias *= scale
            conv.weight *= scale.view(-1, 1, 1, 1)
            ia.implicit.zero_()
            im.implicit.fill_(1.0)

    @torch.no_grad()
    def _sync_anchor_grid(self) -> None:
        self.anchor_grid.copy_((self.anchors * self.stride.view(-1, 1, 1)).view_as(self.anchor_grid))

    def _save_to_state_dict(self, *args, **kwargs):
        # Keep the YOLOv7 ``anchor_grid`` key in step with anchors changed after building (autoanchor).
        self._sync_anchor_grid()
        super()._save_to_state_dict(*args, **kwargs)


@register(rule=DetectionHead(inputs_per_level=2, signature="[nc, anchors] from [lead levels..., aux levels...]"))
class IAuxDetect(IDetect):
    """YOLOv7-W6/E6 training head: IDetect on the first ``nl`` inputs plus plain 1x1 auxiliary heads ``m2``
    on the next ``nl`` (coarse-to-fine lead guided label assignment). YAML: ``[nc, anchors]``.

    Training returns the ``nl`` lead maps followed by the ``nl`` auxiliary maps; eval decodes the lead
    maps only, exactly like IDetect.
    """

    # The auxiliary outputs need the OTA loss's auxiliary assignment; validation sees the lead maps only.
    contract = HeadContract(default_loss="aux-ota", losses=("aux-ota",), eval_loss="v5", upstream="yolov7")

    def __init__(self, nc: int = 80, anchors=(), ch=(), inplace: bool = True):
        super().__init__(nc, anchors, ch[: len(anchors)], inplace)
        self.m2 = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch[self.nl :])

    def forward(self, xs: list[torch.Tensor]):
        lead, aux = xs[: self.nl], xs[self.nl :]
        if not self.training:
            return super().forward(lead)
        return [self.level_output(i, x) for i, x in enumerate(lead)] + [
            self.split_anchors(conv(x)) for conv, x in zip(self.m2, aux, strict=True)
        ]

    @torch.no_grad()
    def initialize_biases(self, class_frequency: torch.Tensor | None = None) -> None:
        """The same priors for the lead and the auxiliary convs (YOLOv7's ``_initialize_aux_biases``)."""
        super().initialize_biases(class_frequency)
        for conv, s in zip(self.m2, self.stride, strict=True):
            self._add_bias_prior(conv, float(s), class_frequency)
