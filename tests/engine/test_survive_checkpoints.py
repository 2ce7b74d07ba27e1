"""Checkpoint faults: damaged weights files on every command, --resume past a damaged last.pt, a full disk during
a save."""

from __future__ import annotations

import errno
import logging

import cv2
import numpy as np
import pytest
import torch

from tests.engine.survive import finite_checkpoint, interrupt_at_epoch, results_column, same_weights
from yolo_attn.checkpoint import CheckpointWriteError, load_checkpoint, make_checkpoint, save_checkpoint
from yolo_attn.cli import main
from yolo_attn.engine.trainer import train
from yolo_attn.nn.builder import build_model

DAMAGE = {  # name: (make the damaged bytes from a good file's, what the error says)
    "truncated": (lambda good, rng: good[: int(len(good) * rng.uniform(0.1, 0.9))], "truncated: a zip archive"),
    "zero-filled": (lambda good, rng: bytes(len(good)), "zero-filled"),
    "empty": (lambda good, rng: b"", "the file is empty"),
    "garbage": (lambda good, rng: b"GARBAGE" + rng.bytes(3000), "neither a zip archive nor a pickle"),
    "pickle-garbage": (lambda good, rng: b"\x80\x02" + rng.bytes(3000), "not a readable PyTorch checkpoint ("),
}


@pytest.fixture(autouse=True)
def label_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path / "cache"))


def damage(path, kind: str, seed: int = 0) -> None:
    path.write_bytes(DAMAGE[kind][0](path.read_bytes(), np.random.default_rng(seed)))


def commands(weights: str, micro: dict, tmp_path) -> dict[str, list[str]]:
    """Every command that reads ``--weights`` or ``--resume``, with what else it needs."""
    images = str(tmp_path / "images")
    run = ["--project", str(tmp_path / "runs")]
    return {
        "info": ["info", "--weights", weights],
        "val": ["val", "--weights", weights, "--data", micro["data"], "--img", "64", *run],
        "predict": ["predict", "--weights", weights, "--source", images, *run],
        "export": ["export", "--weights", weights, "--output", str(tmp_path / "x.onnx")],
        "cam": ["cam", "--weights", weights, "--source", images, *run],
        "train --weights": ["train", "--weights", weights, "--data", micro["data"], "--img", "64", "--epochs", "1",
                            *run],
        "train --resume": ["train", "--resume", weights],
        "ablate --weights": ["ablate", "--blocks", "SE", "--weights", weights, "--data", micro["data"], "--img", "64",
                             "--epochs", "1", *run],
    }


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_weights_file_is_one_clear_error_on_every_command(kind, micro, tmp_path, capsys):
    weights = tmp_path / "last.pt"
    save_checkpoint(weights, make_checkpoint(build_model(micro["cfg"]), names=["a", "b", "c"]))
    damage(weights, kind)
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    for command, argv in commands(str(weights), micro, tmp_path).items():
        assert main(argv) == 2, command
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if " error: " in line]
        assert len(errors) == 1 and "Traceback" not in err, (command, err)
        assert f"{weights}: not a readable PyTorch checkpoint" in errors[0] and DAMAGE[kind][1] in errors[0], errors


@pytest.mark.parametrize("fault", ["truncated", "missing"])
def test_resume_past_a_damaged_last_pt_uses_the_previous_one(fault, micro, tmp_path, monkeypatch, caplog):
    """last.pt truncated (a torn copy) or missing (a kill between the two renames of a save): --resume continues
    from last.prev.pt with a warning and ends bit-identical to a run that was never interrupted."""
    full = load_checkpoint(train(**micro, epochs=3, project=str(tmp_path / "full"))["last"])
    interrupt_at_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(**micro, epochs=3, project=str(tmp_path / "cut"))
    monkeypatch.undo()
    weights = tmp_path / "cut" / "exp" / "weights"
    assert [load_checkpoint(weights / name)["epoch"] for name in ("last.pt", "last.prev.pt")] == [1, 0]
    if fault == "missing":
        (weights / "last.pt").unlink()
    else:
        damage(weights / "last.pt", "truncated")
    with caplog.at_level(logging.WARNING, logger="yolo_attn"):
        resumed = train(resume=True, project=str(tmp_path / "cut"))  # finds the run by its last.prev.pt, too
    assert f"resuming from the previous checkpoint {weights / 'last.prev.pt'} (saved after epoch 1)" in caplog.text
    assert results_column(resumed["save_dir"], "epoch") == ["1", "2", "3"]
    assert same_weights(full, load_checkpoint(resumed["last"]))


class FullDisk:
    """A file whose writes fail with ENOSPC after ``room`` bytes."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def test_a_full_disk_during_a_save_keeps_the_checkpoints_and_stops_clearly(micro, tmp_path, monkeypatch):
    real_save = torch.save

    def save(obj, f, *args, **kwargs):  # epoch 1's checkpoints run out of disk halfway through
        return real_save(obj, FullDisk(f, room=20_000) if obj.get("epoch") == 1 else f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    weights = tmp_path / "exp" / "weights"
    with pytest.raises(CheckpointWriteError, match=(
            r"training stopped after epoch 2: cannot write .*\.pt: \[Errno 28\] No space left on device; .* was left "
            rf"as it was; last good checkpoint: {weights / 'last.pt'} \(epoch 1\)")):
        train(**micro, epochs=3, project=str(tmp_path))
    monkeypatch.undo()
    assert not [p.name for p in weights.iterdir() if p.suffix != ".pt"]  # no temporary file left behind
    assert all(finite_checkpoint(p)["epoch"] == 0 for p in weights.glob("*.pt"))
    resumed = train(resume=str(weights / "last.pt"))  # once the disk has room
    assert results_column(resumed["save_dir"], "epoch") == ["1", "2", "3"]
