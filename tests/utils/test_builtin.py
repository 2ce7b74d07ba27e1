"""Built-in config lookup and recognition."""

from yolo_attn.nn.builder import load_model_yaml
from yolo_attn.utils.builtin import is_builtin_model


def test_a_shipped_config_read_from_its_file_is_recognised_whatever_nc():
    """load_model_yaml records the name it read (yaml_file); that, nc and ch do not make a layout new."""
    d = load_model_yaml("yolov5s.yaml")
    assert "yaml_file" in d and is_builtin_model(d)
    d["nc"], d["ch"] = 3, 1
    assert is_builtin_model(d)


def test_an_edited_layout_is_not_builtin():
    d = load_model_yaml("yolov5s.yaml")
    d["head"][-1] = [[17, 20], 1, "Detect", ["nc", "anchors"]]
    assert not is_builtin_model(d)


def test_an_ultralytics_checkpoints_yaml_is_recognised():
    """Ultralytics saves the scale it built and its input channels ('channels') into the checkpoint's YAML."""
    d = load_model_yaml("yolo11n.yaml")
    d["scale"], d["channels"] = "n", 3
    assert is_builtin_model(d)
    d["scales"]["n"] = [0.5, 0.25, 2048]  # a scale of its own is a new layout
    assert not is_builtin_model(d)
