import numpy as np
import pytest
import torch

from yolo_attn.data.letterbox import letterbox
from yolo_attn.utils.boxes import scale_boxes, xywh2xyxy, xyxy2xywh
from yolo_attn.utils.nms import non_max_suppression


def test_letterbox_minimal_rectangle_and_scale_back():
    image = np.zeros((1080, 810, 3), np.uint8)  # bus.jpg's shape
    boxed, ratio, pad = letterbox(image, 640, stride=32)
    assert boxed.shape == (640, 480, 3) and ratio == (640 / 1080, 640 / 1080) and pad == (0.0, 0.0)
    square, _, pad = letterbox(image, 640, auto=False)
    assert square.shape == (640, 640, 3) and pad == (80.0, 0.0)
    original = torch.tensor([[100.0, 200.0, 400.0, 900.0]])
    r = 640 / 1080
    on_square = original * r + torch.tensor([80.0, 0.0, 80.0, 0.0])
    assert torch.allclose(scale_boxes((640, 640), on_square, (1080, 810)), original, atol=1e-3)


def test_box_format_round_trip():
    xywh = torch.tensor([[50.0, 40.0, 20.0, 10.0]])
    assert torch.equal(xywh2xyxy(xywh), torch.tensor([[40.0, 35.0, 60.0, 45.0]]))
    assert torch.equal(xyxy2xywh(xywh2xyxy(xywh)), xywh)


def prediction(rows):
    """(1, n, 5 + 2): cx, cy, w, h, obj, cls0, cls1."""
    return torch.tensor([rows], dtype=torch.float32)


def test_nms_suppresses_overlaps_within_a_class_only():
    pred = prediction([
        [50, 50, 20, 20, 0.9, 0.9, 0.1],
        [51, 51, 20, 20, 0.8, 0.9, 0.1],  # same place, same class: suppressed
        [50, 50, 20, 20, 0.7, 0.1, 0.9],  # same place, other class: kept
        [150, 150, 20, 20, 0.6, 0.9, 0.1],
    ])
    out = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.45)[0]
    assert out[:, 5].tolist() == [0.0, 1.0, 0.0]
    assert out[:, 4].tolist() == pytest.approx([0.81, 0.63, 0.54])
    agnostic = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.45, agnostic=True)[0]
    assert agnostic[:, 4].tolist() == pytest.approx([0.81, 0.54])


def test_nms_multi_label_keeps_every_class_above_threshold():
    pred = prediction([[50, 50, 20, 20, 0.9, 0.6, 0.5]])
    single = non_max_suppression(pred, conf_thres=0.3, iou_thres=0.6)[0]
    multi = non_max_suppression(pred, conf_thres=0.3, iou_thres=0.6, multi_label=True)[0]
    assert single[:, 5].tolist() == [0.0]
    assert sorted(multi[:, 5].tolist()) == [0.0, 1.0]
    assert non_max_suppression(pred, conf_thres=0.95)[0].shape == (0, 6)
    with pytest.raises(ValueError):
        non_max_suppression(pred, conf_thres=1.5)


def test_nms_without_objectness_scores_by_class_alone():
    # (1, n, 4 + 2) rows as anchor-free heads decode them: cx, cy, w, h, cls0, cls1
    pred = torch.tensor([[
        [50, 50, 20, 20, 0.9, 0.1],
        [51, 51, 20, 20, 0.8, 0.2],  # same place, same class: suppressed
        [50, 50, 20, 20, 0.1, 0.7],  # same place, other class: kept
        [150, 150, 20, 20, 0.2, 0.3],  # best class score 0.3 is above 0.25: kept
        [250, 250, 20, 20, 0.2, 0.1],  # no class above 0.25: dropped
    ]])
    out = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.45, objectness=False)[0]
    assert out[:, 4].tolist() == pytest.approx([0.9, 0.7, 0.3])
    assert out[:, 5].tolist() == [0.0, 1.0, 1.0]
    assert torch.equal(out[0, :4], torch.tensor([40.0, 40.0, 60.0, 60.0]))
    multi = non_max_suppression(pred, conf_thres=0.15, iou_thres=0.45, multi_label=True, objectness=False)[0]
    assert sorted(multi[:, 4].tolist()) == pytest.approx([0.2, 0.2, 0.3, 0.7, 0.9])


def test_nms_keeps_what_per_class_nms_keeps_on_many_boxes():
    from torchvision.ops import batched_nms

    generator = torch.Generator().manual_seed(0)
    n, nc = 3000, 10  # above 1000 boxes torchvision's batched_nms runs one nms per class
    xywh = torch.rand(n, 4, generator=generator) * torch.tensor([600.0, 600.0, 80.0, 80.0]) + 10
    classes = torch.randint(0, nc, (n,), generator=generator)
    class_scores = torch.nn.functional.one_hot(classes, nc) * (torch.rand(n, 1, generator=generator) * 0.9 + 0.05)
    pred = torch.cat((xywh, torch.ones(n, 1), class_scores), 1)
    out = non_max_suppression(pred[None], conf_thres=0.001, iou_thres=0.6, max_det=n)[0]
    boxes, scores = xywh2xyxy(xywh), pred[:, 5:].amax(1)
    expected = batched_nms(boxes, scores, classes, 0.6)
    assert torch.equal(out[:, 4], scores[expected]) and torch.equal(out[:, 5], classes[expected].float())


def test_box_iou_is_torchvisions():
    from torchvision.ops import box_iou as reference

    from yolo_attn.utils.boxes import box_iou

    generator = torch.Generator().manual_seed(0)
    a, b = (torch.rand(n, 4, generator=generator) * 100 for n in (30, 40))
    a[:, 2:] += a[:, :2]
    b[:, 2:] += b[:, :2]
    assert torch.equal(box_iou(a, b), reference(a, b))
