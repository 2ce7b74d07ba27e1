"""YOLOX's ``DetectX`` as YOLOAir builds it: exact parameter counts for YOLOAir's DetectX YAMLs (copied under
``tests/fixtures/yoloair/configs``), YOLOAir's state_dict keys, and eval output parity with YOLOAir's own model on
seeded weights (``tests/fixtures/yoloair_yolox/README.md``)."""

import json
from pathlib import Path

import pytest
import torch

from tests.nn.ultralytics_weights import seeded_input, seeded_state_dict
from yolo_attn import build_model
from yolo_attn.nn.builder import ModelConfigError
from yolo_attn.nn.heads import has_objectness, head_contract
from yolo_attn.nn.heads.yolox import DetectX

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
COUNTS: dict[str, int] = json.loads((FIXTURES / "yoloair" / "param_counts.json").read_text())
DETECTX_CONFIGS = [
    "configs/yolox/yolox-n.yaml",
    "configs/yolo-lite/yoloxs-lite-c.yaml",  # head inputs 35..40
    "configs/yolox-Improved/yolox_cotnet_backbone.yaml",  # head inputs 28..33
    "configs/yolox-Improved/yolox-CNeB-n-backbone.yaml",
]


@pytest.fixture(scope="module")
def eval_case():
    return torch.load(FIXTURES / "yoloair_yolox" / "eval_output.pt", weights_only=True)


@pytest.fixture(scope="module")
def yolox_n():
    return build_model(FIXTURES / "yoloair" / "configs/yolox/yolox-n.yaml")


@pytest.mark.parametrize("cfg", DETECTX_CONFIGS)
def test_parameter_count_matches_yoloair(cfg):
    model = build_model(FIXTURES / "yoloair" / cfg)
    assert isinstance(model.head, DetectX) and model.head.nl == 3
    assert sum(p.numel() for p in model.parameters()) == COUNTS[cfg]


def test_state_dict_keys_are_yoloairs(yolox_n, eval_case):
    ours = {k: list(v.shape) for k, v in yolox_n.state_dict().items()}
    assert ours == dict(zip(eval_case["keys"], eval_case["shapes"], strict=True))


def test_strides_contract_and_bias_priors(yolox_n):
    head = yolox_n.head
    assert head.stride.tolist() == [8.0, 16.0, 32.0] and yolox_n.stride.tolist() == [8.0, 16.0, 32.0]
    contract = head_contract(head)
    assert (contract.default_loss, contract.anchor_based, contract.upstream) == ("yolox", False, "yoloair")
    assert has_objectness(yolox_n)
    prior = torch.tensor(-4.59511985)  # logit(0.01)
    for conv in (*head.cls_preds, *head.obj_preds):
        torch.testing.assert_close(conv.bias, prior.expand_as(conv.bias))


def test_eval_output_matches_yoloair(yolox_n, eval_case):
    shapes = dict(zip(eval_case["keys"], eval_case["shapes"], strict=True))
    yolox_n.load_state_dict(seeded_state_dict(shapes, eval_case["weight_seed"]), strict=True)
    x = seeded_input()  # the fixture's input_seed / input_shape
    yolox_n.eval()
    with torch.no_grad():
        decoded, raw = yolox_n(x)
        yolox_n.head.export = True
        exported = yolox_n(x)
    yolox_n.head.export = False
    torch.testing.assert_close(decoded, eval_case["decoded"], rtol=1e-4, atol=1e-4)
    assert [tuple(r.shape) for r in raw] == [(1, 85, 16, 16), (1, 85, 8, 8), (1, 85, 4, 4)]
    torch.testing.assert_close(exported, decoded)


def test_train_output_feeds_the_stride_probe():
    head = DetectX(2, [[0, 1]] * 2, [8, 16, 8, 16])
    head.bind_strides(torch.tensor([8.0, 16.0]))
    out = head([torch.zeros(1, 8, 4, 6), torch.zeros(1, 16, 4, 6), torch.zeros(1, 8, 2, 3), torch.zeros(1, 16, 2, 3)])
    assert [tuple(o.shape) for o in out] == [(1, 7, 4, 6), (1, 7, 2, 3)]


def test_more_than_one_anchor_is_refused():
    d = {"nc": 2, "anchors": 2, "backbone": [[-1, 1, "Conv", [8, 3, 2]]],
         "head": [[[0, 0], 1, "DetectX", ["nc", "anchors"]]]}
    with pytest.raises(ModelConfigError, match="one box per cell"):
        build_model(d)
