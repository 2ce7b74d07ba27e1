"""DetectionModel helpers: the channels-last switch used by training and evaluation on CPU."""

from __future__ import annotations

import torch
import yaml

from tests.conftest import CONFIGS
from yolo_attn.nn.builder import build_model
from yolo_attn.nn.model import try_channels_last
from yolo_attn.nn.yaml_edit import default_block_args, insert_block

YOLOV5N = (CONFIGS / "models" / "yolov5n.yaml").read_text()


def with_block(block: str) -> torch.nn.Module:
    args = default_block_args(yaml.safe_load(YOLOV5N), 9, block)
    return build_model(yaml.safe_load(insert_block(YOLOV5N, 9, block, args)))


def is_channels_last(model: torch.nn.Module) -> bool:
    weight = model.model[0].conv.weight
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def test_blocks_that_take_nhwc_switch_and_keep_their_outputs():
    model = with_block("CBAM").eval()
    x = torch.rand(3, 3, 96, 64)
    expected = model(x)[0]
    assert model.train().training and try_channels_last(model)
    assert model.training and is_channels_last(model)
    torch.testing.assert_close(model.eval()(x.contiguous(memory_format=torch.channels_last))[0], expected)


def test_a_block_that_cannot_take_nhwc_batches_stays_contiguous():
    """ACmix views the batch axis together with its heads, which NHWC strides forbid for batches over 1."""
    model = with_block("ACmix")
    assert not try_channels_last(model)
    assert model.model[0].conv.weight.is_contiguous() and model.training
    model(torch.rand(2, 3, 128, 128))  # and it still trains as it is
