"""Structural weight transfer: pretrained layers follow their layers when a block is inserted or replaced."""

from __future__ import annotations

import argparse

import pytest
import torch
import yaml

from tests.conftest import CONFIGS
from yolo_attn.checkpoint import (
    load_checkpoint,
    make_checkpoint,
    save_checkpoint,
    transfer_pretrained,
    transfer_weights,
)
from yolo_attn.commands import train as train_command
from yolo_attn.engine.trainer import TrainConfig
from yolo_attn.nn.builder import build_model
from yolo_attn.nn.yaml_edit import default_block_args, insert_block, replace_block


@pytest.fixture(scope="module")
def yolov5n_official(shared):
    path = shared / "weights" / "yolov5n-v6.1.pt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return load_checkpoint(path)


def inserted(text: str, after: int, block: str = "CBAM") -> dict:
    base = yaml.safe_load(text)
    return yaml.safe_load(insert_block(text, after, block, default_block_args(base, after, block)))


def assert_follows_insertion(report, state_dict: dict, model, after: int, new_type: str) -> None:
    """Every pretrained tensor went to its own layer: index i stays for i <= after, i + 1 beyond."""
    assert report.transferred == report.total == len(state_dict)
    assert report.mapping() == {i: i if i <= after else i + 1 for i in range(len(report.mapping()))}
    for old, new in report.keys.items():
        i = int(old.split(".")[1])
        assert new == f"model.{i if i <= after else i + 1}.{old.split('.', 2)[2]}"
        torch.testing.assert_close(model.state_dict()[new], state_dict[old])
    assert [(r.target, r.type) for r in report.layers if r.source is None] == [(after + 1, new_type)]


@pytest.mark.parametrize("after,key_matched", [(4, 97), (9, 198), (13, 234)])
def test_official_yolov5n_weights_follow_an_inserted_cbam(yolov5n_official, after, key_matched):
    text = (CONFIGS / "models" / "yolov5n.yaml").read_text()
    source = yolov5n_official["state_dict"]
    assert transfer_weights(build_model(inserted(text, after)), source) == key_matched  # the old way, for contrast
    model = build_model(inserted(text, after))
    report = transfer_pretrained(model, source, yolov5n_official["model_yaml"])
    assert_follows_insertion(report, source, model, after, "CBAM")
    assert report.summary() == (f"transferred 349/349 pretrained tensors; new layers: {after + 1} CBAM "
                                "(initialised fresh)")


def test_yolov7_tiny_checkpoint_follows_a_backbone_block(tmp_path):
    text = (CONFIGS / "models" / "yolov7-tiny.yaml").read_text()
    source_model = build_model(yaml.safe_load(text))
    save_checkpoint(tmp_path / "tiny.pt", make_checkpoint(source_model, names=[str(i) for i in range(80)]))
    checkpoint = load_checkpoint(tmp_path / "tiny.pt")
    model = build_model(inserted(text, 14, "SE"))
    report = transfer_pretrained(model, checkpoint["state_dict"], checkpoint["model_yaml"])
    assert_follows_insertion(report, checkpoint["state_dict"], model, 14, "SE")


def test_replaced_layer_receives_nothing(yolov5n_official):
    text = (CONFIGS / "models" / "yolov5n.yaml").read_text()
    args = default_block_args(yaml.safe_load(text), 8, "SE")
    model = build_model(yaml.safe_load(replace_block(text, 8, "SE", args)))
    fresh = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("model.8.")}
    report = transfer_pretrained(model, yolov5n_official["state_dict"], yolov5n_official["model_yaml"])
    assert report.mapping() == {i: i for i in range(25) if i != 8}
    assert not [k for k in report.keys.values() if k.startswith("model.8.")]
    for key, value in fresh.items():
        torch.testing.assert_close(model.state_dict()[key], value)  # initialised fresh
    c3_tensors = sum(1 for k in yolov5n_official["state_dict"] if k.startswith("model.8."))
    assert report.transferred == 349 - c3_tensors
    assert report.summary().endswith("new layers: 8 SE (initialised fresh); "
                                     "pretrained layers without a counterpart: 8 C3")
    assert "         8 -> -      C3" in report.table() and "         - -> 8      SE" in report.table()


def test_same_yaml_is_key_matching_with_anchor_and_nc_rules():
    source = build_model(CONFIGS / "models" / "yolov5n.yaml", nc=80)
    target = build_model(CONFIGS / "models" / "yolov5n.yaml", nc=3)
    report = transfer_pretrained(target, source.state_dict(), source.yaml, exclude=("anchor",))
    # The 3 Detect output convs (weight + bias) differ with nc; the anchors stay the model YAML's.
    assert report.transferred == len(source.state_dict()) - 7 and report.excluded == 1
    assert all(old == new for old, new in report.keys.items())
    assert report.summary() == (f"transferred {report.transferred}/{report.total} pretrained tensors "
                                "(1 anchor tensor(s) kept from the model YAML)")
    assert [r for r in report.layers if r.source != r.target] == []


def test_transfer_report_flag_reaches_the_train_config():
    parser = argparse.ArgumentParser()
    train_command.configure_parser(parser)
    config = train_command.config_from_args(parser.parse_args(["--weights", "w.pt", "--transfer-report"]), TrainConfig)
    assert config.transfer_report is True


def test_yolo26n_checkpoint_follows_an_inserted_cbam(tmp_path, after=10):
    """YOLO26 (end-to-end head, both branches): every pretrained tensor lands in the layer it came from."""
    text = (CONFIGS / "models" / "yolo26.yaml").read_text()
    source_yaml = yaml.safe_load(text) | {"scale": "n"}
    source_model = build_model(source_yaml)
    save_checkpoint(tmp_path / "yolo26n.pt", make_checkpoint(source_model, names=[str(i) for i in range(80)]))
    checkpoint = load_checkpoint(tmp_path / "yolo26n.pt")
    target = inserted(text, after) | {"scale": "n"}
    model = build_model(target)
    report = transfer_pretrained(model, checkpoint["state_dict"], checkpoint["model_yaml"])
    assert_follows_insertion(report, checkpoint["state_dict"], model, after, "CBAM")
    assert any(".one2one_cv2." in new for new in report.keys.values())  # the one-to-one branch came along
