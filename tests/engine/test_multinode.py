"""Multi-node DDP: two torchrun launchers on localhost as two nodes of one process each (gloo), training a plugin
block; the ranks end with the same weights, only rank 0 writes checkpoints and plots, and both built the block."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.engine.test_ddp import free_port
from tests.test_plugins_e2e import SEED_BLOCKS, bam_setup, clean_env
from yolo_attn.plugins import sha256_of

RANK_PROGRAM = Path(__file__).with_name("multinode_rank.py")


def launcher(node_rank: int, port: int, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", "--node-rank",
            str(node_rank), "--master-addr", "127.0.0.1", "--master-port", str(port), str(RANK_PROGRAM), *args]


@pytest.mark.slow
def test_two_nodes_train_one_model(tmp_path):
    data, cfg = bam_setup(tmp_path)
    args = ["train", "--plugin", str(SEED_BLOCKS), "--cfg", str(cfg), "--data", str(data), "--epochs", "1", "--img",
            "64", "--batch", "8", "--workers", "0", "--device", "cpu", "--project", "runs"]
    env = clean_env(PYTHONPATH=str(ROOT), YOLO_ATTN_CACHE=str(tmp_path / "cache"), RANK_REPORTS=str(tmp_path))
    port, nodes = free_port(), [tmp_path / "node0", tmp_path / "node1"]
    launchers = []
    for rank, node in enumerate(nodes):  # each node in its own folder: a file rank 1 wrote would show there
        node.mkdir()
        launchers.append(subprocess.Popen(launcher(rank, port, args), cwd=node, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=900) for p in launchers]
    for p, (_, err) in zip(launchers, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert reports[0]["last_step"] >= 0 and reports[0]["weights"] == reports[1]["weights"]
    assert reports[0]["plugin_blocks"] == reports[1]["plugin_blocks"] == ["BAM", "ChannelAttention", "SpatialAttention"]
    loaded = f"plugins {SEED_BLOCKS} (sha256 {sha256_of(SEED_BLOCKS)[:12]})"
    assert f"rank 0: {loaded}" in outputs[0][1] and f"rank 1: {loaded}" in outputs[0][1]
    run = nodes[0] / "runs" / "exp"
    assert (run / "weights" / "last.pt").is_file() and (run / "results.png").is_file()
    assert not (nodes[1] / "runs").exists()
