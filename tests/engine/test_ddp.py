"""DistributedDataParallel on CPU: 2 gloo processes, one epoch, identical weights on both ranks."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from tests.conftest import CONFIGS
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.engine.distributed import init_distributed
from yolo_attn.errors import UserError

WORLD_SIZE = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_rank(rank: int, port: int, data: str, project: str, out_dir: str) -> None:
    """What torchrun does for one process: set the rendezvous variables, then train."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
        YOLO_ATTN_CACHE=os.path.join(out_dir, "cache"), OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    from yolo_attn.engine.trainer import TrainConfig, Trainer

    trainer = Trainer(TrainConfig(
        cfg=str(CONFIGS / "models" / "yolov5n.yaml"), data=data, epochs=1, img=64, batch=8, workers=0, device="cpu",
        project=project, noplots=True,
    ))
    summary = trainer.run()
    torch.save({"params": {k: p.detach() for k, p in trainer.model.named_parameters()}, "summary": summary},
               os.path.join(out_dir, f"rank{rank}.pt"))


def test_two_cpu_processes_end_with_identical_weights(tmp_path):
    data = str(generate_demo_dataset(tmp_path / "demo", n_train=8, n_val=2, img_size=64))
    mp.spawn(run_rank, args=(free_port(), data, str(tmp_path / "runs"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0["summary"]["epochs"] == 1 and rank1["summary"] is None  # only rank 0 validates and reports
    assert (tmp_path / "runs" / "exp" / "weights" / "last.pt").is_file()
    for name, tensor in rank0["params"].items():
        torch.testing.assert_close(rank1["params"][name], tensor, rtol=0, atol=0, msg=name)


def test_single_process_context(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = init_distributed("cpu")
    assert not context.enabled and context.is_main and context.device.type == "cpu"
    with pytest.raises(UserError, match="torchrun --nproc_per_node=2"):
        init_distributed("0,1")
