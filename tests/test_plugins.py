"""Plugins (yolo_attn/plugins.py): blocks from the user's own code through the one registry, the rules read from
their constructors, the declarations, clashes, provenance in checkpoints and what is never imported."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

import yolo_attn
from tests.conftest import CONFIGS
from yolo_attn import build_model
from yolo_attn.checkpoint import load_checkpoint, load_model, make_checkpoint, save_checkpoint
from yolo_attn.cli import main
from yolo_attn.data.config import load_dataset_config
from yolo_attn.engine.ablation import plan_variants
from yolo_attn.engine.cam import capture_gates
from yolo_attn.nn.builder import ModelConfigError, parse_layers
from yolo_attn.nn.registry import lookup
from yolo_attn.nn.summary import count_params
from yolo_attn.plugins import (
    ENTRY_POINT_GROUP,
    ENV_VARIABLE,
    PluginError,
    UndecidedRule,
    infer_rule,
    load_plugin,
    load_plugins,
    loaded_plugins,
    sha256_of,
)

FIXTURES = Path(__file__).parent / "fixtures" / "plugins"
SEED_BLOCKS = FIXTURES / "seed_blocks.py"
YOLOV5N = CONFIGS / "models" / "yolov5n.yaml"


def write(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code), encoding="utf-8")
    return path


def tiny(block: str, args: list | None = None) -> dict:
    """A small detector with ``block`` (args: ``[64]`` unless given) after two 64-channel convolutions."""
    return {"nc": 2, "anchors": [[10, 13, 16, 30, 33, 23]], "yaml_file": "tiny.yaml",
            "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [64, 3, 2]], [-1, 1, block, args or [64]]],
            "head": [[[-1], 1, "Detect", ["nc", "anchors"]]]}


def layer_params(block: str, args: list, channels: int = 256) -> int:
    """Parameters of one YAML line ``[-1, 1, block, args]`` after a layer with ``channels`` outputs."""
    layers, _, _ = parse_layers({"nc": 80, "backbone": [[-1, 1, block, args]], "head": []}, channels)
    return count_params(layers)


def test_seed_blocks_build_at_the_builtin_parameter_counts(clean_plugins):
    lines = {"GAMAttention": [256], "DoubleAttentionLayer": [256, 3]}
    builtin = {"CBAM": layer_params("CBAM", [256]), "CloAttention": layer_params("CloAttention", [8, [4, 4], [5], 4]),
               **{name: layer_params(name, args) for name, args in lines.items()}}
    plugin = load_plugin(str(SEED_BLOCKS))
    assert lookup("GAMAttention").cls.__module__ == plugin.module
    pasted = {"CBAM": layer_params("BAM", [256]),  # the seed's "BAM" is a CBAM
              "CloAttention": layer_params("CloAttention", [256]),  # channels first, as its constructor says
              **{name: layer_params(name, args) for name, args in lines.items()}}
    assert pasted == builtin
    assert builtin["CBAM"] == 8_290


@pytest.mark.slow
def test_seed_configs_build_with_the_pasted_code_as_with_the_builtin_blocks(clean_plugins, shared):
    configs = sorted((shared / "seed-configs").glob("*.yaml"))
    builtin = [count_params(build_model(path)) for path in configs]
    load_plugin(str(SEED_BLOCKS))
    assert [count_params(build_model(path)) for path in configs] == builtin == [46_580_995, 33_428_378]


def test_rules_are_read_from_the_constructors(clean_plugins):
    plugin = load_plugin(str(SEED_BLOCKS))
    assert plugin.blocks["GAMAttention"] == "conv, inferred from (c1, c2, group=True, rate=4)"
    assert plugin.blocks["BAM"] == "keep_channels, inferred from (in_planes)"
    assert plugin.blocks["SpatialAttention"] == "pass_through, inferred from (kernel_size=7)"
    assert plugin.blocks["DoubleAttentionLayer"] == "conv, declared in YOLO_ATTN_RULES"
    assert lookup("GAMAttention").rule.signature == "[c2, group=True, rate=4]"
    assert lookup("DoubleAttentionLayer").rule.signature == "[c2, c_n, reconstruct=False]"
    assert lookup("ChannelAttention").rule.signature == "[c2=c1, ratio=16]"
    assert lookup("BAM").cls.yaml_example == "[-1, 1, BAM, [256]]"  # what insert and ablate fit to the layer


def test_an_ambiguous_constructor_names_the_line_that_settles_it(clean_plugins, tmp_path):
    path = write(tmp_path / "double.py", """
        from torch import nn

        class DoubleAttentionLayer(nn.Module):
            def __init__(self, in_channels, c_m, c_n, reconstruct=False):
                super().__init__()
                self.conv = nn.Conv2d(in_channels, c_m, 1)

            def forward(self, x):
                return self.conv(x)

        YOLO_ATTN_OVERRIDES = ["DoubleAttentionLayer"]
    """)
    load_plugin(str(path))
    assert isinstance(lookup("DoubleAttentionLayer").rule, UndecidedRule)
    assert infer_rule(lookup("DoubleAttentionLayer").cls)[1] == (
        "undecided: (in_channels, c_m, c_n, reconstruct=False) is ambiguous")
    with pytest.raises(ModelConfigError) as error:
        layer_params("DoubleAttentionLayer", [256, 3])
    message = str(error.value)
    assert "\n" not in message and "cannot tell whether 'c_m' is its output channels" in message
    assert "YOLO_ATTN_RULES = {'DoubleAttentionLayer': 'conv'}" in message


def test_a_clash_with_a_builtin_block_is_refused_unless_declared(clean_plugins, tmp_path):
    code = """
        from torch import nn

        class CBAM(nn.Module):
            def __init__(self, c1):
                super().__init__()

            def forward(self, x):
                return x
    """
    with pytest.raises(PluginError, match=r"clashes with the built-in block CBAM .*YOLO_ATTN_OVERRIDES = \['CBAM'\]"):
        load_plugin(str(write(tmp_path / "clash.py", code)))
    assert lookup("CBAM").cls.__module__ == "yolo_attn.nn.attention.cbam"
    load_plugin(str(write(tmp_path / "override.py", textwrap.dedent(code) + "YOLO_ATTN_OVERRIDES = ['CBAM']\n")))
    assert count_params(lookup("CBAM").cls(64)) == 0


def test_wrong_declarations_are_refused(clean_plugins, tmp_path):
    with pytest.raises(PluginError, match="give one of conv, csp"):
        load_plugin(str(write(tmp_path / "a.py", """
            from torch import nn
            class A(nn.Module):
                pass
            YOLO_ATTN_RULES = {"A": "convolution"}
        """)))
    with pytest.raises(PluginError, match="declares 'Missing'"):
        load_plugin(str(write(tmp_path / "b.py", "YOLO_ATTN_OVERRIDES = ['Missing']\n")))
    with pytest.raises(PluginError, match=r"broken\.py: ZeroDivisionError while importing it"):
        load_plugin(str(write(tmp_path / "broken.py", "1 / 0\n")))
    with pytest.raises(PluginError, match="no such file"):
        load_plugin(str(tmp_path / "missing.py"))
    with pytest.raises(PluginError, match="no module named 'no_such_package'"):
        load_plugin("no_such_package.blocks")


def test_only_classes_defined_in_the_plugin_become_blocks(clean_plugins, tmp_path):
    plugin = load_plugin(str(write(tmp_path / "mine.py", """
        from torch import nn
        from torch.nn import Identity

        class Mine(nn.Module):
            def __init__(self, c1, c2):
                super().__init__()
                self.conv = nn.Conv2d(c1, c2, 1)

            def forward(self, x):
                return self.conv(x)
    """)))
    assert list(plugin.blocks) == ["Mine"] and plugin.sha256 == sha256_of(tmp_path / "mine.py")
    assert load_plugin(str(tmp_path / "mine.py")) is plugin  # loading it again changes nothing


def test_the_environment_and_entry_points_name_plugins(clean_plugins, tmp_path, monkeypatch):
    one = write(tmp_path / "one.py", "from torch import nn\nclass One(nn.Module):\n    pass\n")
    two = write(tmp_path / "two.py", "from torch import nn\nclass Two(nn.Module):\n    pass\n")
    package = tmp_path / "site" / "acme_blocks"
    package.mkdir(parents=True)
    write(package / "__init__.py", "")
    write(package / "attention.py", "from torch import nn\nclass AcmeGate(nn.Module):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = importlib.metadata.EntryPoint(name="acme", value="acme_blocks.attention", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [entry] if group == ENTRY_POINT_GROUP else [])
    monkeypatch.setenv(ENV_VARIABLE, os.pathsep.join([str(one), str(two)]))
    names = [plugin.name for plugin in load_plugins()]
    assert names == ["acme_blocks.attention", str(one), str(two)]
    assert {"AcmeGate", "One", "Two"} <= {spec.name for spec in yolo_attn.nn.all_blocks()}


def test_a_plugin_may_use_the_public_register(clean_plugins, tmp_path):
    assert yolo_attn.register is yolo_attn.nn.registry.register
    path = write(tmp_path / "decorated.py", """
        from torch import nn
        from yolo_attn import register
        from yolo_attn.nn.rules import SameWidth

        @register("MyAttn", rule=SameWidth(pass_width=False))
        class MyAttention(nn.Module):
            yaml_example = "[-1, 1, MyAttention, [256]]"

            def __init__(self, channels):
                super().__init__()
                self.scale = nn.Parameter(torch.ones(1))

            def forward(self, x):
                return x * self.scale

        import torch
    """)
    plugin = yolo_attn.load_plugin(str(path))
    assert plugin.blocks == {"MyAttention": "registered with its rule [c2=c1, *args]"}
    model = build_model(tiny("MyAttn"))
    assert make_checkpoint(model, names=["a"])["plugins"] == {"MyAttention": {"plugin": str(path),
                                                                             "sha256": sha256_of(path)}}


def test_a_checkpoint_records_its_plugin_and_needs_it(clean_plugins, tmp_path, capsys, caplog):
    plugin_file = tmp_path / "seed_blocks.py"
    plugin_file.write_bytes(SEED_BLOCKS.read_bytes())
    load_plugin(str(plugin_file))
    model = build_model(tiny("GAMAttention"))
    checkpoint = make_checkpoint(model, names=[str(i) for i in range(80)])
    assert checkpoint["schema"] == 3
    assert checkpoint["plugins"] == {"GAMAttention": {"plugin": str(plugin_file), "sha256": sha256_of(plugin_file)}}
    save_checkpoint(tmp_path / "gam.pt", checkpoint)
    clean_plugins()  # a new process, without the plugin
    assert main(["info", "--weights", str(tmp_path / "gam.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"yolo-attn info: error: {tmp_path / 'gam.pt'}: block 'GAMAttention' comes from the plugin "
                   f"{plugin_file}, which is not loaded: pass --plugin {plugin_file} (or name it in ${ENV_VARIABLE})"]
    assert main(["info", "--weights", str(tmp_path / "gam.pt"), "--plugin", str(plugin_file)]) == 0
    assert "plugin block GAMAttention: YAML args [c2, group=True, rate=4]" in capsys.readouterr().out
    clean_plugins()
    plugin_file.write_text(plugin_file.read_text() + "\n# edited\n")
    load_plugin(str(plugin_file))
    loaded = load_model(tmp_path / "gam.pt")
    assert count_params(loaded.model) == count_params(model)
    assert "block 'GAMAttention' was saved with the plugin" in caplog.text and "its code changed" in caplog.text


def test_older_checkpoints_load_with_no_plugins(tmp_path):
    checkpoint = make_checkpoint(build_model(tiny("CBAM")), names=["a", "b"])
    del checkpoint["plugins"]
    checkpoint["schema"] = 2
    save_checkpoint(tmp_path / "v2.pt", checkpoint)
    assert load_checkpoint(tmp_path / "v2.pt")["plugins"] == {}


EVIL = """
    from pathlib import Path
    Path(__file__).with_name("imported.txt").write_text("the file was imported")
    from torch import nn
    class Evil(nn.Module):
        pass
"""


def assert_never_imported(folder: Path) -> None:
    assert not (folder / "imported.txt").exists()
    assert not any(getattr(m, "__file__", None) == str(folder / "evil.py") for m in list(sys.modules.values()))


@pytest.mark.parametrize("name", ["evil.Evil", "evil.py", "./evil.py:Evil", "{folder}/evil.py"])
def test_a_model_yaml_naming_a_file_or_module_is_refused_and_imports_nothing(clean_plugins, tmp_path, monkeypatch,
                                                                              name):
    write(tmp_path / "evil.py", EVIL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    model_yaml = {**tiny(name.format(folder=tmp_path), []), "plugins": ["evil.py"], "plugin": "evil"}
    with pytest.raises(ModelConfigError, match="never imports a file or module: load your block with --plugin"):
        build_model(model_yaml)
    assert_never_imported(tmp_path)


def test_a_data_yaml_or_checkpoint_naming_a_file_imports_nothing(clean_plugins, tmp_path, monkeypatch, shared):
    write(tmp_path / "evil.py", EVIL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = yaml.safe_load((shared / "data" / "coco8" / "coco8.yaml").read_text())
    data.update(path=str(shared / "data" / "coco8"), plugins=["evil.py"], plugin="evil", download="evil.py")
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(data))
    assert load_dataset_config(tmp_path / "data.yaml").nc == 80
    checkpoint = make_checkpoint(build_model(tiny("CBAM")), names=["a", "b"])
    checkpoint["plugins"] = {"Evil": {"plugin": str(tmp_path / "evil.py"), "sha256": "0" * 64}}
    checkpoint["model_yaml"]["backbone"][2] = [-1, 1, "Evil", []]
    save_checkpoint(tmp_path / "evil.pt", checkpoint)
    with pytest.raises(PluginError, match=f"block 'Evil' comes from the plugin {tmp_path / 'evil.py'}, which is "
                                          f"not loaded: pass --plugin {tmp_path / 'evil.py'}"):
        load_model(tmp_path / "evil.pt")
    assert_never_imported(tmp_path)
    assert loaded_plugins() == []


def test_insert_and_ablate_fit_a_plugin_block_as_a_builtin_one(clean_plugins, tmp_path, capsys):
    output = tmp_path / "bam.yaml"
    assert main(["insert", str(YOLOV5N), "--after", "9", "--block", "BAM", "--plugin", str(SEED_BLOCKS),
                 "-o", str(output)]) == 0
    assert "[-1, 1, BAM, [1024]]" in output.read_text()
    assert "+8,290 vs yolov5n.yaml" in capsys.readouterr().out
    variants = plan_variants(YOLOV5N.read_text(), ["GAMAttention"], [4], None, None)
    assert [v.name for v in variants] == ["base", "GAMAttention-after4"]
    assert "[-1, 1, GAMAttention, [256]]" in variants[1].yaml_text  # layer 4 of yolov5n: 256 x 0.25 channels


def test_cam_records_the_gates_a_plain_plugin_declares(clean_plugins):
    load_plugin(str(SEED_BLOCKS))
    model = build_model(tiny("BAM")).eval()
    with torch.no_grad(), capture_gates(model) as gates:
        model(torch.rand(1, 3, 64, 64))
    assert [(g.layer, g.path, g.block, g.kind, tuple(g.gate.shape)) for g in gates] == [
        (2, "model.2.ca", "BAM", "channel", (1, 64, 1, 1)), (2, "model.2.sa", "BAM", "spatial", (1, 1, 16, 16))]
