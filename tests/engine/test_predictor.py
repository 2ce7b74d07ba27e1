"""``predict``: parity with YOLOv5's detect.py on the official YOLOv5n v6.1 weights, and the CLI's outputs."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from yolo_attn.checkpoint import load_model
from yolo_attn.cli import main
from yolo_attn.engine.predictor import image_paths, predict, preprocess
from yolo_attn.errors import UserError
from yolo_attn.utils.annotate import class_color, draw_detections

# YOLOv5 v6.1 detect.py, yolov5n-v6.1.pt, --img 640 --conf 0.25 --iou 0.45 (from the issue): (class, confidence).
REFERENCE = {
    "bus.jpg": [(0, 0.876), (0, 0.805), (0, 0.787), (0, 0.519), (5, 0.492)],
    "zidane.jpg": [(0, 0.788), (0, 0.412), (27, 0.268)],
}
# The issue gives no reference boxes; these are ours (x1, y1, x2, y2), recorded when every confidence above
# matched to 0.001, and guard against regressions.
RECORDED_BOXES = {
    "bus.jpg": [[55, 398, 211, 889], [683, 367, 810, 881], [216, 409, 346, 865], [0, 573, 72, 893],
                [23, 228, 806, 781]],
    "zidane.jpg": [[743, 40, 1154, 715], [134, 181, 742, 720], [436, 434, 503, 712]],
}


@pytest.fixture(scope="module")
def yolov5n(shared):
    return load_model(shared / "weights" / "yolov5n-v6.1.pt", fuse=True).model


def test_letterbox_is_minimal_rectangle(shared):
    bus = cv2.imread(str(shared / "data" / "images" / "bus.jpg"))
    assert bus.shape[:2] == (1080, 810)
    assert preprocess(bus, 640, 32, torch.device("cpu")).shape == (1, 3, 640, 480)


@pytest.mark.parametrize("image", REFERENCE)
def test_parity_with_yolov5_detect(shared, yolov5n, image):
    bgr = cv2.imread(str(shared / "data" / "images" / image))
    det = predict(yolov5n, [bgr], img_size=640, conf_thres=0.25, iou_thres=0.45)[0]
    assert det[:, 5].long().tolist() == [cls for cls, _ in REFERENCE[image]]
    assert det[:, 4].tolist() == pytest.approx([conf for _, conf in REFERENCE[image]], abs=0.005)
    iou = box_iou(det[:, :4], torch.tensor(RECORDED_BOXES[image], dtype=torch.float32)).diagonal()
    assert (iou > 0.95).all(), iou
    h, w = bgr.shape[:2]
    assert (det[:, [0, 2]] <= w).all() and (det[:, [1, 3]] <= h).all() and (det[:, :2] < det[:, 2:4]).all()


def test_predict_cli_outputs(shared, tmp_path, capsys):
    source = tmp_path / "images"
    source.mkdir()
    shutil.copy(shared / "data" / "images" / "zidane.jpg", source / "zidane.jpg")
    (source / "broken.jpg").write_bytes(b"not a jpeg")
    (source / "notes.txt").write_text("not an image")
    args = ["predict", "--weights", str(shared / "weights" / "yolov5n-v6.1.pt"), "--source", str(source),
            "--project", str(tmp_path / "runs"), "--save-txt", "--save-conf", "--save-json", "--json"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "broken.jpg" in err and "warning" in err
    save_dir = tmp_path / "runs" / "exp"
    assert json.loads(out.strip().splitlines()[-1])["save_dir"] == str(save_dir)
    annotated = cv2.imread(str(save_dir / "zidane.jpg"))
    assert annotated.shape == (720, 1280, 3)
    assert not np.array_equal(annotated, cv2.imread(str(source / "zidane.jpg")))
    rows = [line.split() for line in (save_dir / "labels" / "zidane.txt").read_text().splitlines()]
    assert [int(r[0]) for r in rows] == [0, 0, 27]
    values = np.array([[float(v) for v in r[1:]] for r in rows])
    assert values.shape == (3, 5) and (values > 0).all() and (values <= 1).all()
    np.testing.assert_allclose(values[:, 4], [0.788, 0.412, 0.268], atol=0.005)
    coco = json.loads((save_dir / "predictions.json").read_text())
    assert [(c["image_id"], c["category_name"]) for c in coco] == [("zidane", "person")] * 2 + [("zidane", "tie")]
    x, y, bw, bh = coco[0]["bbox"]
    assert bw > 0 and bh > 0 and x + bw <= 1280 and y + bh <= 720

    assert main(args[:-4] + ["--classes", "27"]) == 0  # a second run goes to exp2, only ties
    assert (tmp_path / "runs" / "exp2" / "zidane.jpg").is_file()
    assert "1 tie" in capsys.readouterr().out


def test_bad_thresholds_are_refused_while_parsing(shared, capsys):
    images = str(shared / "data" / "images")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--weights", "unused.pt", "--source", images, "--conf", "1.5"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("yolo-attn predict: error: argument --conf/--conf-thres: invalid value 1.5: "
                                       "must be between 0 and 1\n")


def test_predict_crops_without_annotated_images(shared, tmp_path, capsys):
    """YOLOv5's --save-crop with --nosave: one crop per detection under crops/<class>/, no annotated image."""
    args = ["predict", "--weights", str(shared / "weights" / "yolov5n-v6.1.pt"), "--source",
            str(shared / "data" / "images" / "bus.jpg"), "--project", str(tmp_path), "--save-crop", "--nosave"]
    assert main(args) == 0
    save_dir = tmp_path / "exp"
    assert not (save_dir / "bus.jpg").exists()
    crops = sorted(p.relative_to(save_dir / "crops").as_posix() for p in (save_dir / "crops").rglob("*.jpg"))
    assert crops == ["bus/bus_4.jpg", "person/bus_0.jpg", "person/bus_1.jpg", "person/bus_2.jpg", "person/bus_3.jpg"]
    x1, y1, x2, y2 = RECORDED_BOXES["bus.jpg"][0]
    h, w = cv2.imread(str(save_dir / "crops" / "person" / "bus_0.jpg")).shape[:2]
    assert abs(w - ((x2 - x1) * 1.02 + 10)) <= 2 and abs(h - ((y2 - y1) * 1.02 + 10)) <= 2  # YOLOv5's gain and pad


def test_hidden_labels_and_scores():
    image = np.zeros((100, 120, 3), np.uint8)
    det = torch.tensor([[20.0, 40.0, 80.0, 90.0, 0.9, 1.0]])
    full, names_only, boxes_only = (draw_detections(image, det, ["cat", "dog"], hide_labels=not labels,
                                                      hide_conf=not scores)
                                    for labels, scores in ((True, True), (True, False), (False, True)))
    label_area = (slice(0, 36), slice(0, 120))  # the label sits above the box (its line reaches y 38)
    assert not boxes_only[label_area].any() and names_only[label_area].any()
    assert 0 < (names_only[label_area] != 0).sum() < (full[label_area] != 0).sum()  # "dog" is shorter than "dog 0.90"


def test_image_sources(tmp_path):
    for name in ("b.jpg", "a.png", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in image_paths(tmp_path)] == ["a.png", "b.jpg"]
    assert [p.name for p in image_paths(tmp_path / "*.jpg")] == ["b.jpg"]
    assert image_paths(tmp_path / "a.png") == [tmp_path / "a.png"]
    with pytest.raises(UserError, match="no such file"):
        image_paths(tmp_path / "missing.jpg")
    with pytest.raises(UserError, match="no images found"):
        image_paths(tmp_path / "*.bmp")


def test_draw_detections():
    image = np.zeros((100, 120, 3), np.uint8)
    assert np.array_equal(draw_detections(image, torch.zeros(0, 6), ["cat"]), image)
    drawn = draw_detections(image, torch.tensor([[20.0, 30.0, 80.0, 90.0, 0.9, 1.0]]), ["cat", "dog"])
    assert tuple(drawn[60, 20]) == class_color(1)  # left edge of the box
    assert tuple(drawn[60, 50]) == (0, 0, 0)  # inside stays untouched
    assert image.sum() == 0  # the input is not modified
