"""End-to-end (NMS-free) heads: YOLO26's ``Detect`` with top-level ``end2end`` / ``reg_max`` and YOLOv10's
``v10Detect``, on yolov8n's backbone, against Ultralytics 8.4.190 (``tests/fixtures/ultralytics/end_to_end_heads.pt``):
counts, state-dict keys, eval detections, training branches, and the NMS-free predict / evaluate path."""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import CONFIGS, ROOT
from tests.nn.ultralytics_weights import seeded_input, seeded_state_dict
from yolo_attn import build_model
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.engine import predictor, validator
from yolo_attn.engine.cam import DetectionTarget
from yolo_attn.nn.builder import ModelConfigError
from yolo_attn.nn.heads import configure_end_to_end, head_contract
from yolo_attn.nn.heads.anchor_free import AnchorFreeDetect
from yolo_attn.nn.heads.end_to_end import EndToEndDetect, V10Detect
from yolo_attn.nn.summary import count_gflops, count_params
from yolo_attn.utils.nms import end_to_end_detections

FIXTURE = torch.load(ROOT / "tests" / "fixtures" / "ultralytics" / "end_to_end_heads.pt", weights_only=True)
MODELS = FIXTURE["models"]


def model_dict(name: str, **top_level) -> dict:
    """yolov8n.yaml as a dict: with YOLO26's head (``yolov8n-end2end``) or YOLOv10's (``yolov8n-v10Detect``)."""
    d = {**yaml.safe_load((CONFIGS / "models" / "yolov8.yaml").read_text()), "scale": "n", **top_level}
    if name == "yolov8n-end2end":
        d.update(end2end=True, reg_max=1)
    elif name == "yolov8n-v10Detect":
        d["head"][-1] = [[15, 18, 21], 1, "v10Detect", ["nc"]]
    return d


@pytest.fixture(scope="module", params=sorted(MODELS))
def seeded(request):
    """(fixture entry, our model in eval mode with the seeded weights Ultralytics' side used, NMS-free as the
    fixture was made: Ultralytics' ``nms=False``)."""
    reference = MODELS[request.param]
    model = build_model(model_dict(request.param))
    shapes = dict(zip(reference["keys"], map(tuple, reference["shapes"]), strict=True))
    model.load_state_dict(seeded_state_dict(shapes), strict=True)
    assert configure_end_to_end(model, 300, nms_free=True)
    return reference, model.eval()


def test_counts_and_state_dict_match_ultralytics(seeded):
    reference, model = seeded
    state = model.state_dict()
    assert count_params(model) == reference["params"]
    assert sorted(state) == reference["keys"]
    assert [list(state[k].shape) for k in reference["keys"]] == reference["shapes"]
    assert count_gflops(model, 640) == pytest.approx(reference["gflops"], rel=1e-3)


def test_head_layouts_from_the_yaml():
    e2e, v10 = build_model(model_dict("yolov8n-end2end")).head, build_model(model_dict("yolov8n-v10Detect")).head
    assert type(e2e) is EndToEndDetect and e2e.reg_max == 1 and isinstance(e2e.dfl, torch.nn.Identity)
    assert e2e.one2one_cv2[0][-1].out_channels == 4 and e2e.cv2[0][0].conv.out_channels == 16  # max(16, 64 // 4, 4)
    assert type(v10) is V10Detect and v10.reg_max == 16 and v10.one2one_cv3[0][0][0].conv.groups == 64
    for head in (e2e, v10):
        assert torch.all(head.one2one_cv2[2][-1].bias == 2.0)
        assert head.one2one_cv3[0][-1].bias[0].item() == pytest.approx(float(np.log(5 / 80 / 80**2)))
        contract = head_contract(head)
        assert contract.end_to_end and (contract.default_loss, contract.objectness) == ("e2e", False)
    assert not head_contract(build_model(CONFIGS / "models" / "yolov8n.yaml").head).end_to_end


def test_top_level_keys_reach_only_the_detect_rule():
    plain = build_model(model_dict("yolov8n", end2end=False, reg_max=1)).head
    assert type(plain) is AnchorFreeDetect and plain.reg_max == 1
    v10 = build_model(model_dict("yolov8n-v10Detect", reg_max=1, end2end=False)).head  # as Ultralytics: not read
    assert type(v10) is V10Detect and v10.reg_max == 16
    with pytest.raises(ModelConfigError, match=r"layer 22 .*top-level 'end2end' must be true or false"):
        build_model(model_dict("yolov8n", end2end="yes"))
    with pytest.raises(ModelConfigError, match="top-level 'reg_max' must be a positive int"):
        build_model(model_dict("yolov8n", reg_max=0))


def test_eval_detections_match_ultralytics(seeded):
    """The one-to-one branch's top-k, class-aware, agnostic and with a smaller max_det; then fused."""
    reference, model = seeded
    x = seeded_input()
    with torch.no_grad():
        detections, raw = model(x)
        torch.testing.assert_close(detections, reference["detections"], rtol=1e-5, atol=1e-5)
        assert set(raw) == {"one2many", "one2one"}
        for attribute, value, key in (("agnostic", True, "detections_agnostic"), ("max_det", 20, "detections_max20")):
            setattr(model.head, attribute, value)
            try:
                torch.testing.assert_close(model(x)[0], reference[key], rtol=1e-5, atol=1e-5)
            finally:
                delattr(model.head, attribute)  # back to the class defaults
        fused = copy.deepcopy(model).fuse()
        detections, raw = fused(x)
    assert set(raw) == {"one2many", "one2one"}  # kept for the validation loss, unlike Ultralytics' fuse
    # Near-tied scores may swap places after BatchNorm folding: every row has its twin in Ultralytics' fused output.
    ours, theirs = detections[0], reference["detections_fused"][0]
    distance = (ours[:, None] - theirs[None]).abs().amax(-1)  # (ours, theirs): the largest coordinate difference
    assert ours.shape == theirs.shape and distance.amin(1).max() < 1e-3 and distance.amin(0).max() < 1e-3


def test_training_output_holds_both_branches(seeded):
    reference, model = seeded
    model.head.training = True  # the head alone in training mode, BatchNorm kept in eval (as the fixture)
    try:
        with torch.no_grad():
            out = model(seeded_input())
    finally:
        model.head.training = False
    head = model.head
    assert set(out) == {"one2many", "one2one"}
    for branch in ("one2many", "one2one"):
        maps = out[branch]
        assert [tuple(p.shape) for p in maps] == [(1, 4 * head.reg_max + 80, s, s) for s in (16, 8, 4)]
        flat = torch.cat([p.flatten(2) for p in maps], 2)[0]
        stats = torch.stack((flat.mean(1), flat.amax(1)))
        torch.testing.assert_close(stats, reference[f"train_{branch}_stats"], rtol=1e-5, atol=1e-5)


def test_one_to_one_branch_reads_detached_features():
    head = EndToEndDetect(nc=2, ch=(8, 16), reg_max=1).train()
    head.bind_strides(torch.tensor([8.0, 16.0]))
    features = [torch.rand(2, 8, 4, 4, requires_grad=True), torch.rand(2, 16, 2, 2, requires_grad=True)]
    out = head(features)
    sum(p.sum() for p in out["one2one"]).backward()
    assert all(f.grad is None for f in features) and head.one2one_cv2[0][-1].weight.grad is not None
    sum(p.sum() for p in out["one2many"]).backward()
    assert all(f.grad is not None for f in features)


def test_nms_free_postprocess_matches_ultralytics(seeded):
    """evaluate(): the head keeps val's max_det, rows above conf pass; predict(): the head keeps at least 300, then
    the class filter and max_det, as Ultralytics' validator and predictor with nms=False."""
    reference, model = seeded
    conf, classes = reference["conf"], reference["classes"]
    with torch.no_grad():
        assert configure_end_to_end(model, 300, nms_free=True)
        val = end_to_end_detections(model(seeded_input())[0], conf, max_det=300)[0]
        assert configure_end_to_end(model, max(5, predictor.END_TO_END_MIN_CANDIDATES), nms_free=True)
        pred = end_to_end_detections(model(seeded_input())[0], conf, classes, max_det=5)[0]
    torch.testing.assert_close(val, reference["final_val"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pred, reference["final_predict"], rtol=1e-5, atol=1e-5)
    assert 0 < len(val) < 300 and set(pred[:, 5].tolist()) <= set(map(float, classes))


def _no_nms(*args, **kwargs):
    raise AssertionError("NMS called for an end-to-end head")


def test_predict_and_evaluate_skip_nms(monkeypatch, tmp_path):
    monkeypatch.setattr(predictor, "non_max_suppression", _no_nms)
    monkeypatch.setattr(validator, "non_max_suppression", _no_nms)
    data = generate_demo_dataset(tmp_path / "demo", n_train=1, n_val=2, img_size=64)
    nc = yaml.safe_load(data.read_text())["nc"]
    model = build_model(model_dict("yolov8n-end2end", nc=nc)).eval()
    image = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    det = predictor.predict(model, [image], img_size=64, conf_thres=0.0, max_det=7, nms_free=True)[0]
    assert det.shape == (7, 6) and model.head.max_det == 300
    assert torch.all(det[:-1, 4] >= det[1:, 4]) and det[:, :4].min() >= 0 and det[:, [0, 2]].max() <= 70
    result = validator.evaluate(model, data, img_size=64, batch_size=2, workers=0, plots=False, coco=False,
                                progress=False, verbose=False, max_det=50, cache_dir=tmp_path / "cache", nms_free=True)
    assert result["images"] == 2 and model.head.max_det == 50


def test_default_inference_is_one_to_many_with_nms(seeded):
    """As Ultralytics 8.4 validates and predicts by default (``nms=None``): the one-to-many branch, decoded as
    YOLOv8's head decodes, then NMS."""
    _, model = seeded
    assert not configure_end_to_end(model, 300)
    with torch.no_grad():
        decoded, raw = model(seeded_input())
    torch.testing.assert_close(decoded, AnchorFreeDetect.decode(model.head, raw["one2many"]), rtol=0, atol=0)
    assert decoded.shape == (1, 16 * 16 + 8 * 8 + 4 * 4, 4 + 80)


def test_cam_target_reads_end_to_end_rows():
    rows = torch.tensor([[[0.0, 0.0, 10.0, 10.0, 0.9, 1.0], [1.0, 1.0, 11.0, 11.0, 0.8, 1.0],
                          [20.0, 20.0, 30.0, 30.0, 0.5, 0.0], [0.0, 0.0, 5.0, 5.0, 0.1, 2.0]]], requires_grad=True)
    score, detections, what = DetectionTarget(False, conf=0.25, end_to_end=True)(rows)
    assert what == "all detections" and score.item() == pytest.approx(0.9 + 0.8 + 0.5)  # overlapping rows kept: no NMS
    assert detections[:, 5].tolist() == [1.0, 1.0, 0.0]
    score, _, what = DetectionTarget(False, cls=2, end_to_end=True)(rows)
    assert "best box" in what and score.item() == pytest.approx(0.1)


FULL_MODELS = torch.load(ROOT / "tests" / "fixtures" / "ultralytics" / "end_to_end_models.pt", weights_only=True)


@pytest.mark.parametrize("cfg", sorted(FULL_MODELS["models"]))
def test_full_models_one_to_one_inference_matches_ultralytics(cfg):
    """yolo26n and yolov10n on seeded weights: the one-to-one detections (Ultralytics' nms=False) and the default
    one-to-many output (its nms=None) as Ultralytics 8.4.190 gives them (tests/fixtures/ultralytics/README.md)."""
    reference = FULL_MODELS["models"][cfg]
    model = build_model(cfg).eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    lines = "".join(f"{k}:{list(shapes[k])}\n" for k in sorted(shapes))
    assert hashlib.sha1(lines.encode()).hexdigest() == reference["keys_sha1"]
    assert count_params(model) == reference["params"]
    model.load_state_dict(seeded_state_dict(shapes), strict=True)
    with torch.no_grad():
        assert configure_end_to_end(model, 300, nms_free=True)
        torch.testing.assert_close(model(seeded_input())[0], reference["detections"], rtol=1e-5, atol=1e-5)
        assert not configure_end_to_end(model, 300)
        decoded = model(seeded_input())[0][0].T  # (4 + nc, cells), Ultralytics' layout
    torch.testing.assert_close(torch.stack((decoded.mean(1), decoded.amax(1))), reference["one2many_stats"],
                               rtol=1e-5, atol=1e-5)
