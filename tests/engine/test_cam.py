"""``yolo-attn cam``'s library: gates read by hook, detection targets through the head contract, letterbox
undone, the CAM on the official YOLOv5n weights concentrated in the detected boxes, and the figure."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from tests.conftest import CONFIGS
from yolo_attn.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint, transfer_weights
from yolo_attn.data.letterbox import letterbox
from yolo_attn.engine.cam import (
    CamSettings,
    DetectionTarget,
    ablation_cam_figure,
    box_means,
    capture_gates,
    draw_cam_figure,
    explain_all,
    gate_layers,
    head_inputs,
    load_models,
    read_image,
    undo_letterbox,
)
from yolo_attn.errors import UserError
from yolo_attn.nn.attention import _gates
from yolo_attn.nn.attention.cbam import CBAM
from yolo_attn.nn.builder import build_model
from yolo_attn.nn.registry import all_blocks
from yolo_attn.nn.yaml_edit import default_block_args, insert_block

IMG = 320
VARIANT_BLOCKS = ((9, "CBAM"), (6, "GAMAttention"))  # applied in turn: CBAM at 10, then GAMAttention at 7


def variant_checkpoint(path: Path, official: Path, inserts=VARIANT_BLOCKS) -> Path:
    """yolov5n with blocks inserted as ``yolo-attn insert`` does; the official weights moved to their new
    layer indices (the blocks themselves stay freshly initialised)."""
    text = (CONFIGS / "models" / "yolov5n.yaml").read_text()
    for after, block in inserts:
        text = insert_block(text, after, block, default_block_args(yaml.safe_load(text), after, block))
    model = build_model(yaml.safe_load(text))
    checkpoint = load_checkpoint(official)

    def moved(i: int) -> int:
        for after, _ in inserts:
            i += i > after
        return i

    state = {re.sub(r"^model\.(\d+)\.", lambda m: f"model.{moved(int(m.group(1)))}.", k): v
             for k, v in checkpoint["state_dict"].items()}
    assert transfer_weights(model, state) == len(state)
    save_checkpoint(path, make_checkpoint(model, names=checkpoint["names"]))
    return path


@pytest.fixture(scope="module")
def official(shared) -> Path:
    return shared / "weights" / "yolov5n-v6.1.pt"


@pytest.fixture(scope="module")
def variant(official, tmp_path_factory) -> Path:
    return variant_checkpoint(tmp_path_factory.mktemp("cam") / "cbam_gam.pt", official)


@pytest.fixture(scope="module")
def base_model(official):
    return load_models([official])


def test_protocol_module_is_imported_and_registers_nothing():
    assert sys.modules[_gates.__name__] is _gates  # the package's auto-import includes modules starting with _
    assert not [s.name for s in all_blocks() if s.cls.__module__ == _gates.__name__]


def test_capture_collects_gates_and_leaves_the_block_as_it_was():
    block = CBAM(64).eval()
    x = torch.randn(2, 64, 9, 11)
    before = block(x)
    with capture_gates(block) as gates:
        during = block(x)
    assert torch.equal(before, during)
    assert [(g.kind, tuple(g.gate.shape)) for g in gates] == [("channel", (2, 64, 1, 1)), ("spatial", (2, 1, 9, 11))]
    assert [(g.path, g.block, g.layer) for g in gates] == [("channel_attention.gate", "CBAM", None),
                                                          ("spatial_attention.gate", "CBAM", None)]
    assert torch.equal(gates[0].gate, block.channel_attention(x))
    assert not any(m._forward_hooks for m in block.modules())  # the hooks are gone on exit
    block(x)
    assert len(gates) == 2  # off again: nothing more recorded


@pytest.mark.parametrize("objectness", [True, False])
def test_target_reads_the_head_contract(objectness):
    nc, extra = 3, 1 if objectness else 0
    rows = torch.zeros(1, 4, 4 + extra + nc)
    rows[0, :, :4] = torch.tensor([[50, 50, 20, 20], [52, 50, 20, 20], [150, 150, 30, 30], [10, 10, 5, 5.0]])
    rows[0, :, 4:] = 0.05
    if objectness:
        rows[0, :3, 4] = 1.0
    rows[0, :, 4 + extra + 1] = torch.tensor([0.9, 0.8, 0.6, 0.1])  # class 1
    rows.requires_grad_(True)
    score, detections, what = DetectionTarget(objectness, conf=0.25, iou=0.45)(rows)
    assert what == "all detections"
    assert detections[:, 5].tolist() == [1.0, 1.0] and score.item() == pytest.approx(0.9 + 0.6)  # box 2 suppressed
    score, _, what = DetectionTarget(objectness, cls=2)(rows)
    assert "best box" in what and score.item() == pytest.approx(0.05)  # no class-2 detection: its best box


def test_undo_letterbox_maps_back_to_the_image():
    image = np.zeros((300, 500, 3), np.uint8)
    boxed, ratio, (dw, dh) = letterbox(image, 256, stride=32, auto=True)
    heat = torch.zeros(boxed.shape[:2])
    x1, y1, x2, y2 = 100, 50, 200, 150  # in the image
    heat[round(y1 * ratio[1] + dh):round(y2 * ratio[1] + dh), round(x1 * ratio[0] + dw):round(x2 * ratio[0] + dw)] = 1
    back = undo_letterbox(heat, boxed.shape[:2], image.shape[:2])
    assert back.shape == image.shape[:2]
    ys, xs = np.nonzero(back > 0.5)
    assert abs(xs.min() - x1) <= 2 and abs(xs.max() - x2) <= 2 and abs(ys.min() - y1) <= 2 and abs(ys.max() - y2) <= 2


@pytest.mark.parametrize("name", ["bus.jpg", "zidane.jpg"])
def test_cam_is_higher_inside_the_detections(name, shared, base_model):
    image = read_image(shared / "data" / "images" / name)
    explanation = explain_all(base_model, image, CamSettings(img_size=IMG))[0]
    assert len(explanation.detections) >= 2 and list(explanation.cams) == [17, 20, 23]
    for layer, cam in explanation.cams.items():
        means = box_means(cam, explanation.detections)
        assert cam.shape == image.shape[:2] and means["mean_in"] > means["mean_out"], (layer, means)
    eigen = explain_all(base_model, image, CamSettings(img_size=IMG, method="eigencam"))[0]
    combined = box_means(sum(eigen.cams.values()), eigen.detections)
    assert combined["mean_in"] > combined["mean_out"]


def test_attention_blocks_hand_out_their_maps(variant, shared, tmp_path):
    models = load_models([variant])
    assert gate_layers(models[0][1].model) == {7: "GAMAttention", 11: "CBAM"}
    assert head_inputs(models[0][1].model) == [19, 22, 25]
    image = read_image(shared / "data" / "images" / "bus.jpg")
    explanation = explain_all(models, image, CamSettings(img_size=IMG))[0]
    titles = [t for t, _ in explanation.spatial_gates]
    assert titles == ["layer 7 GAMAttention spatial gate", "layer 11 CBAM spatial gate"]
    assert all(v.shape == image.shape[:2] and 0 <= v.min() <= v.max() <= 1 for _, v in explanation.spatial_gates)
    title, weights = explanation.channel_gate
    assert title == "layer 7 GAMAttention channel gates" and weights.shape == (128,)
    only_cbam = explain_all(models, image, CamSettings(img_size=IMG, blocks=(11,), layers=(11,)))[0]
    assert [t for t, _ in only_cbam.spatial_gates] == ["layer 11 CBAM spatial gate"] and list(only_cbam.cams) == [11]


def test_two_models_give_a_two_row_figure(official, variant, shared, tmp_path):
    bus = shared / "data" / "images" / "bus.jpg"
    one = draw_cam_figure([official], [bus], tmp_path / "one.png", CamSettings(img_size=IMG), dpi=40)
    two = draw_cam_figure([official, variant], [bus], tmp_path / "two.png", CamSettings(img_size=IMG), dpi=40)
    (h1, w1), (h2, w2) = cv2.imread(str(one)).shape[:2], cv2.imread(str(two)).shape[:2]
    assert 1.8 < h2 / h1 < 2.2 and w2 > w1  # a second row, and columns for the variant's gates


@pytest.mark.parametrize("settings, message", [
    (CamSettings(layers=(99,)), "--layer 99: yolov5n-v6.1 has layers 0..23"),
    (CamSettings(blocks=(5,)), "--block 5: no attention block with a map to show there"),
    (CamSettings(class_name="unicorn"), "--class unicorn: not a class of yolov5n-v6.1"),
    (CamSettings(method="magic"), "--method magic"),
])
def test_bad_settings_are_user_errors(settings, message, base_model, shared):
    image = read_image(shared / "data" / "images" / "bus.jpg")
    with pytest.raises(UserError, match=re.escape(message)):
        explain_all(base_model, image, settings)


def test_unreadable_image_is_a_user_error(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="broken.jpg: not a readable image"):
        read_image(broken)


def test_gates_inside_other_blocks_are_named_after_their_attention_block():
    """The SE inside YOLOAir's MobileNetV3 bottleneck hands out its gate like the zoo's SE."""
    backbone = [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "mobilev3_bneck", [16, 32, 3, 1, 1, 1]]]
    model = build_model({"nc": 1, "anchors": [[10, 13, 16, 30, 33, 23]], "backbone": backbone,
                         "head": [[[-1], 1, "Detect", ["nc", "anchors"]]]})
    assert gate_layers(model) == {1: "SE"}
    with capture_gates(model) as gates:
        model(torch.zeros(1, 3, 64, 64))
    assert [(g.layer, g.block, g.kind, tuple(g.gate.shape)) for g in gates] == [(1, "SE", "channel", (1, 32, 1, 1))]


def test_ablation_figure_is_linked_from_the_table(official, variant, shared, tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "opt.yaml").write_text(yaml.safe_dump({"data": str(shared / "data" / "coco8" / "coco8.yaml"),
                                                                "img": 64, "seed": 3, "cfg": "/x/yolov5n.yaml"}))
    (tmp_path / "ablation.md").write_text("| variant |\n")
    figure = ablation_cam_figure(tmp_path, ["base", "CBAM-GAM"], [official, variant], 2)
    assert figure == tmp_path / "cam.png" and figure.is_file()
    link = "![Grad-CAM of every variant, seed 3, on 2 validation images](cam.png)"
    assert link in (tmp_path / "ablation.md").read_text()
