import pytest
import torch

from tests.conftest import CONFIGS
from yolo_attn import build_model
from yolo_attn.nn.summary import count_params, summarize

YOLOV5 = {
    "yolov5n": (1_872_157, 4.56),
    "yolov5s": (7_235_389, 16.62),
    "yolov5m": (21_190_557, 49.23),
    "yolov5l": (46_563_709, 109.58),
    "yolov5x": (86_749_405, 206.31),
}


@pytest.mark.parametrize("name", YOLOV5)
def test_yolov5_parity(name):
    params, gflops = YOLOV5[name]
    summary = summarize(build_model(CONFIGS / "models" / f"{name}.yaml"), 640)
    assert summary.params == params
    assert summary.gflops == gflops  # YOLOv5's thop count, which summarize() rounds to 2 decimals as the fixture is
    assert summary.strides == [8, 16, 32]


def test_state_dict_keys_match_yolov5():
    keys = build_model(CONFIGS / "models" / "yolov5n.yaml").state_dict().keys()
    for key in ("model.0.conv.weight", "model.2.cv1.bn.running_mean", "model.24.m.0.weight", "model.24.anchors",
                "model.2.m.0.cv2.conv.weight", "model.9.cv2.bn.num_batches_tracked"):
        assert key in keys


def test_nc_override_changes_head_only():
    m80 = build_model(CONFIGS / "models" / "yolov5n.yaml")
    m3 = build_model(CONFIGS / "models" / "yolov5n.yaml", nc=3)
    head_delta = sum(c.weight.shape[1] * 3 * 77 + 3 * 77 for c in m80.head.m)
    assert count_params(m80) - count_params(m3) == head_delta
    assert m3.head.no == 8


def test_anchors_in_stride_units_and_bias_prior():
    m = build_model(CONFIGS / "models" / "yolov5n.yaml")
    assert torch.allclose(m.head.anchors[0, 0], torch.tensor([10 / 8, 13 / 8]))
    assert torch.allclose(m.head.anchors[2, 2], torch.tensor([373 / 32, 326 / 32]))
    bias = m.head.m[0].bias.view(3, -1)
    assert bias[0, 4].item() == pytest.approx(torch.log(torch.tensor(8 / (640 / 8) ** 2)).item(), abs=0.2)


@pytest.mark.parametrize("train", [True, False])
def test_forward_non_square(train):
    m = build_model(CONFIGS / "models" / "yolov5n.yaml", nc=4).train(train)
    out = m(torch.rand(2, 3, 256, 320))
    if train:
        assert [tuple(o.shape) for o in out] == [(2, 3, 32, 40, 9), (2, 3, 16, 20, 9), (2, 3, 8, 10, 9)]
    else:
        decoded, raw = out
        assert decoded.shape == (2, 3 * (32 * 40 + 16 * 20 + 8 * 10), 9)
        assert len(raw) == 3
