"""``yolo-attn insert`` and its library (yolo_attn.nn.yaml_edit): renumbering, graph preservation,
parameter counts, comments, layouts, replace, dry-run and errors."""

import argparse
import logging
import re

import pytest
import torch
import yaml

from tests.conftest import CONFIGS
from yolo_attn import build_model
from yolo_attn.cli import main
from yolo_attn.commands import ablate
from yolo_attn.engine.ablation import AblationConfig
from yolo_attn.nn.attention.cbam import CBAM
from yolo_attn.nn.summary import count_params
from yolo_attn.nn.yaml_edit import (
    YamlEditError,
    hand_edit_warning,
    insert_block,
    layer_spans,
    readers_of,
    replace_block,
    resolve_block_name,
)

YOLOV5S = CONFIGS / "models" / "yolov5s.yaml"

# Small YOLOv7-style graph: an MP branch read back through -3 and an absolute lateral (8 <- 2).
TINY = """\
# tiny two-level model
nc: 2
width_multiple: 0.25
anchors:
  - [10,13, 16,30, 33,23]  # P3/8
  - [30,61, 62,45, 59,119]  # P4/16

backbone:
  # [from, number, module, args]
  [[-1, 1, Conv, [32, 3, 2]],  # 0
   [-1, 1, Conv, [64, 3, 2]],  # 1
   [-1, 1, Conv, [64, 3, 2]],  # 2 P3/8
   [-1, 1, MP, []],  # 3
   [-1, 1, Conv, [64, 1, 1]],  # 4
   [-3, 1, Conv, [64, 3, 2]],  # 5 reads 2
   [[-1, -2], 1, Concat, [1]],  # 6 P4/16
  ]

head:
  [[-1, 1, Conv, [64, 1, 1]],  # 7
   [2, 1, Conv, [64, 1, 1]],  # 8 lateral from P3
   [[8, 7], 1, Detect, [nc, anchors]],  # 9
  ]
"""


def sources(text: str) -> list:
    d = yaml.safe_load(text)
    return [entry[0] for entry in d["backbone"] + d["head"]]


def test_renumbering_keeps_every_reference():
    new = insert_block(TINY, 3, "nn.Identity")
    assert sources(new) == [-1, -1, -1, -1, -1, -1, -4, [-1, -2], -1, 2, [9, 8]]
    new = insert_block(TINY, 2, "nn.Identity")
    assert sources(new) == [-1, -1, -1, -1, -1, -1, -4, [-1, -2], -1, 2, [9, 8]]
    assert readers_of(new, 3) == [4]  # only the MP that followed layer 2 through -1 reads the new layer
    rewired = insert_block(TINY, 2, "nn.Identity", rewire_all=True)
    assert sources(rewired) == [-1, -1, -1, -1, -1, -1, -3, [-1, -2], -1, 3, [9, 8]]


@pytest.mark.parametrize("after", [2, 3, 5, 7])
def test_identity_insert_computes_the_same_function(after):
    torch.manual_seed(0)
    base = build_model(yaml.safe_load(TINY)).eval()
    edited = build_model(yaml.safe_load(insert_block(TINY, after, "nn.Identity"))).eval()

    def shifted(key: str) -> str:
        i = int(key.split(".")[1])
        return key.replace(f"model.{i}.", f"model.{i + 1}.", 1) if i > after else key

    edited.load_state_dict({shifted(k): v for k, v in base.state_dict().items()})
    x = torch.rand(1, 3, 64, 96)
    assert torch.equal(base(x)[0], edited(x)[0])


def test_yolov5s_insert_renumbers_detect_and_adds_block_params():
    text = YOLOV5S.read_text()
    new = insert_block(text, 4, "CBAM", "[256]")
    d = yaml.safe_load(new)
    layers = d["backbone"] + d["head"]
    assert layers[5] == [-1, 1, "CBAM", [256]]
    assert layers[-1][0] == [18, 21, 24]  # Detect inputs
    assert [x[0] for x in layers if x[2] == "Concat"] == [[-1, 7], [-1, 4], [-1, 15], [-1, 11]]
    base = count_params(build_model(yaml.safe_load(text)))
    assert count_params(build_model(d)) == base + count_params(CBAM(128))


def test_comments_and_layout_are_kept():
    text = YOLOV5S.read_text()
    new = insert_block(text, 4, "CBAM", "[256]")
    old_lines, new_lines = text.splitlines(), new.splitlines()
    assert len(new_lines) == len(old_lines) + 1
    assert new_lines[:16] == old_lines[:16]  # header comments and layers 0..4 untouched
    for comment in ("# cat backbone P4", "# cat head P5", "# Detect(P3, P4, P5)", "# [from, number, module, args]"):
        assert new.count(comment) == text.count(comment) == 1
    # trailing comments that carry the layer's own index follow it; others stay as written
    assert "[-1, 3, C3, [256, False]],  # 18 (P3/8-small)" in new
    assert "[-1, 1, Conv, [512, 3, 2]],  # 6-P4/16" in new
    assert "[-1, 1, Conv, [256, 3, 2]],  # 3-P3/8" in new


def test_block_style_layout():
    text = "nc: 2\nanchors: [[10,13, 16,30, 33,23]]\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]  # 0\n" \
           "  - [-1, 1, Conv, [16, 3, 2]]\nhead:\n  - [[-1], 1, Detect, [nc, anchors]]\n"
    new = insert_block(text, 1, "CBAM")
    assert "  - [-1, 1, Conv, [16, 3, 2]]\n  - [-1, 1, CBAM, []]\nhead:" in new
    assert sources(new) == [-1, -1, -1, [-1]]
    build_model(yaml.safe_load(new))


def test_one_line_layout_and_missing_trailing_comma():
    text = "nc: 2\nanchors: [[10,13, 16,30, 33,23]]\n" \
           "backbone: [[-1, 1, Conv, [16, 3, 2]], [-1, 1, Conv, [16, 3, 1]]]\n" \
           "head:\n  [[[0, 1], 1, Concat, [1]],\n   [[-1], 1, Detect, [nc, anchors]]  # no comma\n  ]\n"
    new = insert_block(text, 0, "CBAM", [16])
    assert "[[-1, 1, Conv, [16, 3, 2]], [-1, 1, CBAM, [16]], [-1, 1, Conv" in new
    assert sources(new)[:4] == [-1, -1, -1, [0, 2]]
    new = insert_block(text, 2, "nn.Identity")
    assert "[[0, 1], 1, Concat, [1]],\n   [-1, 1, nn.Identity, []],\n" in new
    build_model(yaml.safe_load(new))
    new = insert_block(new, 3, "nn.Identity", rewire_all=True)  # after the first Identity; Detect keeps reading -1
    assert yaml.safe_load(new)["head"][-1][0] == [-1]


def test_replace_block_keeps_from_and_number():
    text = (CONFIGS / "attention" / "yolov5s-CBAM.yaml").read_text()
    new = replace_block(text, 10, "BAM", "[1024, 8]")
    assert "   [-1, 1, BAM, [1024, 8]],\n" in new
    assert sources(new) == sources(text)
    assert type(build_model(yaml.safe_load(new)).model[10]).__name__ == "BAM"


@pytest.mark.parametrize(("after", "block", "args", "message"), [
    (24, "CBAM", "[]", r"--after 24: insert after a layer 0\.\.23"),
    (-1, "CBAM", "[]", "--after -1"),
    (4, "CBAMM", "[]", "unknown block 'CBAMM'"),
    (4, "CBAM", "__import__('os')", "must be a list"),
    (4, "CBAM", "[1, 2", "not a YAML list"),
])
def test_errors(after, block, args, message):
    with pytest.raises(YamlEditError, match=message):
        insert_block(YOLOV5S.read_text(), after, block, args)


def test_rejects_multiline_layers():
    text = "nc: 1\nbackbone:\n  - - -1\n    - 1\n    - Conv\n    - [16]\nhead: []\n"
    with pytest.raises(YamlEditError, match="layer 0: each layer must be a one-line list"):
        layer_spans(text)


def test_cli_dry_run_prints_diff_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["insert", str(YOLOV5S), "--after", "4", "--block", "CBAM", "--args", "[256]", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"--- {YOLOV5S}\n+++ yolov5s-CBAM.yaml\n")
    assert "\n+   [-1, 1, CBAM, [256]],\n" in out
    assert "\n-   [[17, 20, 23], 1, Detect, [nc, anchors]],  # Detect(P3, P4, P5)\n" in out
    assert "\n+   [[18, 21, 24], 1, Detect, [nc, anchors]],  # Detect(P3, P4, P5)\n" in out
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_a_model_that_builds(tmp_path, capsys):
    out_path = tmp_path / "v5s-cbam.yaml"
    assert main(["insert", str(YOLOV5S), "--after", "9", "--block", "CBAM", "-o", str(out_path)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"wrote .*v5s-cbam\.yaml: 7,268,255 parameters \(\+32,866 vs yolov5s\.yaml\)", printed)
    assert out_path.read_text() == insert_block(YOLOV5S.read_text(), 9, "CBAM", [1024])  # default args fit layer 9


def test_cli_reports_user_errors(tmp_path, capsys):
    out_path = tmp_path / "bad.yaml"
    argv = ["insert", str(YOLOV5S), "--after", "4", "--block", "CBAM", "--args", "[512]", "-o", str(out_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "does not build" in err and "layer 5 [-1, 1, CBAM, [512]]" in err and "keeps its input channels" in err
    assert not out_path.exists()
    assert main(["insert", str(tmp_path / "missing.yaml"), "--after", "1", "--block", "CBAM"]) == 2
    assert "model YAML not found" in capsys.readouterr().err


def test_args_are_written_in_yolo_style():
    new = insert_block(TINY, 3, "DoubleAttention", "[16, 4, true]")
    assert "[-1, 1, DoubleAttention, [16, 4, True]]," in new
    new = insert_block(TINY, 3, "nn.Upsample", "[None, 1, 'nearest']")
    assert yaml.safe_load(new)["backbone"][4] == [-1, 1, "nn.Upsample", ["None", 1, "nearest"]]


def test_cli_replace_dry_run(capsys):
    cfg = CONFIGS / "attention" / "yolov5s-CBAM.yaml"
    assert main(["insert", str(cfg), "--replace", "10", "--block", "BAM", "--args", "[1024]", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "\n-   [-1, 1, CBAM, [1024]],\n+   [-1, 1, BAM, [1024]],\n" in out


def test_insert_keeps_the_scale_of_the_name_it_is_given(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["insert", "yolo11s.yaml", "--after", "10", "--block", "CBAM"]) == 0
    assert "wrote yolo11s-CBAM.yaml: 9,491,618 parameters (+32,866 vs yolo11s.yaml)" in capsys.readouterr().out
    text = (tmp_path / "yolo11s-CBAM.yaml").read_text()
    assert text.startswith("scale: s  # picked from the base name yolo11s.yaml\n")
    renamed = tmp_path / "mine.yaml"  # a name that says nothing of the scale: the written key decides
    renamed.write_text(text)
    model = build_model(renamed)
    assert count_params(model) == 9_491_618 and model.yaml["scale"] == "s"
    assert yaml.safe_load(text)["head"][-3][0] == [-1, 11]  # the P5 concat reads CBAM (layer 11), not layer 10


def test_insert_refuses_to_overwrite_without_force(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hand_edited = tmp_path / "yolov5n-CBAM.yaml"
    hand_edited.write_text("# my edits\n")
    assert main(["insert", "yolov5n.yaml", "--after", "9", "--block", "CBAM"]) == 2
    assert "yolov5n-CBAM.yaml exists; --force overwrites it" in capsys.readouterr().err
    assert hand_edited.read_text() == "# my edits\n"
    assert main(["insert", "yolov5n.yaml", "--after", "9", "--block", "CBAM", "--force"]) == 0
    assert "[-1, 1, CBAM, [1024]]" in hand_edited.read_text()


def test_block_names_are_matched_ignoring_case_with_a_note(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["insert", "yolov5n.yaml", "--after", "9", "--block", "cbam"]) == 0
    captured = capsys.readouterr()
    assert "note: block 'cbam' read as 'CBAM'" in captured.err
    assert "[-1, 1, CBAM, [1024]]" in (tmp_path / "yolov5n-CBAM.yaml").read_text()
    assert resolve_block_name("gamattention") == "GAMAttention" and resolve_block_name("CBAM") == "CBAM"
    with pytest.raises(YamlEditError, match=r"unknown block 'CBMA' \(did you mean CBAM"):
        resolve_block_name("CBMA")


def test_a_name_matching_two_blocks_ignoring_case_is_refused(monkeypatch):
    from yolo_attn.nn import yaml_edit
    from yolo_attn.nn.registry import BlockSpec

    specs = [BlockSpec("Se", torch.nn.Identity, None), BlockSpec("SE", torch.nn.Identity, None)]
    monkeypatch.setattr(yaml_edit, "all_blocks", lambda: specs)
    with pytest.raises(YamlEditError, match="block 'se' matches SE and Se ignoring case; give its exact name"):
        resolve_block_name("se")


@pytest.mark.parametrize("shipped", sorted((CONFIGS / "attention").glob("*.yaml")), ids=lambda p: p.name)
def test_default_wiring_is_the_shipped_configs_wiring(shipped):
    """insert's and ablate's default (every reader of layer IDX reads the new block) rebuilds the graph of every
    config in configs/attention from the command in its header."""
    made_with = re.search(r"yolo-attn insert (\S+) --after (\d+) --block (\w+)", shipped.read_text())
    base = (CONFIGS.parent / made_with.group(1)).read_text()
    inserted = insert_block(base, int(made_with.group(2)), made_with.group(3), "[]", rewire_all=True)
    assert sources(inserted) == sources(shipped.read_text())
    ablate_parser = argparse.ArgumentParser()
    ablate.configure_parser(ablate_parser)
    assert ablate_parser.parse_args(["--blocks", "CBAM"]).rewire_all and AblationConfig(blocks=()).rewire_all


def cbam_after_sppf_by_hand() -> str:
    """yolov5n with CBAM pasted after SPPF and nothing renumbered: the classic hand edit."""
    text = (CONFIGS / "models" / "yolov5n.yaml").read_text()
    sppf = "[-1, 1, SPPF, [1024, 5]],  # 9\n"
    return text.replace(sppf, f"{sppf}   [-1, 1, CBAM, [1024]],\n")


def test_hand_edit_warning_names_the_line_that_moved_and_the_insert_command(tmp_path, caplog):
    path = tmp_path / "yolov5n-CBAM.yaml"
    path.write_text(cbam_after_sppf_by_hand())
    with caplog.at_level(logging.WARNING, logger="yolo_attn"):
        wrong = build_model(path)
    assert count_params(wrong) == 1_986_687  # it builds, wired wrongly
    assert f"{path} line 29: '# 13' is on layer 14: a layer was added or removed above it by hand" in caplog.text
    assert f"If it is CBAM on line 22, remove that line and run: yolo-attn insert {path} --after 9 --block CBAM " \
           "--args '[1024]'" in caplog.text
    right = insert_block((CONFIGS / "models" / "yolov5n.yaml").read_text(), 9, "CBAM", "[1024]")
    assert count_params(build_model(yaml.safe_load(right))) == 1_880_447
    assert hand_edit_warning(right, "right.yaml") is None  # insert renumbers the comments too


def test_hand_edit_check_is_silent_without_index_comments_and_on_every_shipped_config():
    assert hand_edit_warning(re.sub(r"#.*", "", cbam_after_sppf_by_hand()), "bare.yaml") is None
    shipped = sorted(CONFIGS.rglob("*.yaml"))
    assert len(shipped) > 50
    assert {str(p): hand_edit_warning(p.read_text(), str(p)) for p in shipped} == {str(p): None for p in shipped}
