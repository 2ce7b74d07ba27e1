"""The GPU path in one command: every check the CUDA code paths need, with their figures, in under 8 minutes on one GPU.

    python scripts/gpu_acceptance.py [--device 0] [--out docs/gpu.md] [--quick]

On CUDA (the default device when there is one) it runs, on the official YOLOv5n v6.1 weights and COCO128 of
``../shared``:

- ``val`` on CUDA and on the CPU: mAP50 and mAP50-95 within 0.002 of each other;
- a 3-epoch fine-tune with AMP on CUDA and in fp32 on the CPU: mAP50-95 within 0.01;
- every attention block forward and backward under fp16 autocast with channels-last weights and inputs, no NaN/Inf;
- ``train --deterministic`` twice (COCO8): identical weights and ``results.csv``;
- ``torchrun`` training on the GPU, and a DDP step over an NCCL process group;
- ``cam`` and ``export`` on CUDA;
- training and inference throughput (img/s) and peak GPU memory.

It exits 1 when a check fails, writes its table to ``--out`` (on CUDA by default ``docs/gpu.md``) and prints it. On a
machine without CUDA it runs what the CPU can at tiny sizes (the blocks in fp32, determinism on a synthetic set,
``cam`` and ``export``) and names every CUDA check it skips; without ``--out`` it then writes no file, so that CPU
figures never stand in ``docs/gpu.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "weights" / "yolov5n-v6.1.pt"
COCO128 = SHARED / "data" / "coco128" / "coco128.yaml"
COCO8 = SHARED / "data" / "coco8" / "coco8.yaml"
BUS = SHARED / "data" / "images" / "bus.jpg"
VAL_TOLERANCE, FINETUNE_TOLERANCE = 0.002, 0.01

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


class CheckFailed(Exception):
    """A check whose figures are out of bounds; the message gives them."""


class Skipped(Exception):
    """A check this machine cannot run; the message says why."""


@dataclass(frozen=True)
class Setup:
    """Where the checks run: ``device`` (``"0"`` or ``"cpu"``), tiny sizes with ``quick``, scratch folder ``work``."""

    device: str
    quick: bool
    work: Path

    @property
    def cuda(self) -> bool:
        return self.device != "cpu"

    @property
    def torch_device(self) -> torch.device:
        return torch.device(f"cuda:{self.device}" if self.cuda else "cpu")


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # "pass", "FAIL" or "skipped"
    detail: str
    seconds: float


def yolo_attn(setup: Setup, *args: str, launcher: tuple[str, ...] = ("-m", "yolo_attn")) -> dict[str, Any]:
    """``yolo-attn ARGS --json`` in a process of its own; its JSON line (a CheckFailed with the stderr's end when it
    fails)."""
    env = {**os.environ, "YOLO_ATTN_CACHE": str(setup.work / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, *launcher, *args, "--json"], cwd=setup.work, env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise CheckFailed(f"yolo-attn {' '.join(args[:1])} exited {done.returncode}: {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def need(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise Skipped(f"missing {', '.join(missing)} (../shared)")


# -- the checks: each returns its figures as text -----------------------------------------------------------------

def val_cuda_vs_cpu(setup: Setup) -> str:
    need(WEIGHTS, COCO128)
    common = ("val", "--weights", str(WEIGHTS), "--data", str(COCO128), "--img", "640", "--batch", "32")
    cpu = yolo_attn(setup, *common, "--device", "cpu")
    gpu = yolo_attn(setup, *common, "--device", setup.device)
    gaps = {k: abs(float(gpu[k]) - float(cpu[k])) for k in ("map50", "map50_95")}
    figures = (f"CUDA mAP50 {gpu['map50']:.4f} mAP50-95 {gpu['map50_95']:.4f}; CPU {cpu['map50']:.4f} "
               f"{cpu['map50_95']:.4f}; largest gap {max(gaps.values()):.4f} (bound {VAL_TOLERANCE})")
    if max(gaps.values()) > VAL_TOLERANCE:
        raise CheckFailed(figures)
    return figures


def amp_finetune(setup: Setup) -> str:
    need(WEIGHTS, COCO128)
    common = ("train", "--weights", str(WEIGHTS), "--data", str(COCO128), "--epochs", "3", "--img", "640", "--batch",
              "16", "--workers", "4", "--noplots", "--project", str(setup.work / "finetune"))
    gpu = yolo_attn(setup, *common, "--device", setup.device, "--name", "cuda")
    cpu = yolo_attn(setup, *common, "--device", "cpu", "--name", "cpu")
    gap = abs(float(gpu["map50_95"]) - float(cpu["map50_95"]))
    figures = (f"mAP50-95 after 3 epochs: CUDA+AMP {gpu['map50_95']:.4f} ({gpu['wall_s']:.0f} s), CPU fp32 "
               f"{cpu['map50_95']:.4f} ({cpu['wall_s']:.0f} s); gap {gap:.4f} (bound {FINETUNE_TOLERANCE})")
    if gap > FINETUNE_TOLERANCE:
        raise CheckFailed(figures)
    return figures


def block_step(spec: Any, setup: Setup, size: int, memory_format: torch.memory_format) -> bool:
    """One forward and backward of the block after a 256-channel convolution (its ``yaml_example``), batch 2, under
    fp16 autocast on CUDA (fp32 on the CPU): whether the output and every gradient are finite."""
    from yolo_attn.nn.builder import parse_layers

    torch.manual_seed(0)
    entry = yaml.safe_load(spec.cls.yaml_example)
    layers, _, _ = parse_layers({"nc": 1, "backbone": [[-1, 1, "Conv", [256, 1, 1]], entry], "head": []}, ch=3)
    model = torch.nn.Sequential(*layers).to(setup.torch_device, memory_format=memory_format).train()
    images = torch.rand(2, 3, size, size, device=setup.torch_device).contiguous(memory_format=memory_format)
    with torch.autocast(setup.torch_device.type, dtype=torch.float16, enabled=setup.cuda):
        output = model(images)
    output.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return bool(torch.isfinite(output).all()) and all(bool(torch.isfinite(g).all()) for g in grads)


def attention_blocks(setup: Setup) -> str:
    """Every attention block forward and backward with channels-last weights and inputs; a block that cannot take
    NHWC tensors (a ``view`` of its input) runs contiguous, as training runs it (``try_channels_last``), and is
    named."""
    from yolo_attn.nn.catalog import is_attention
    from yolo_attn.nn.registry import all_blocks

    size = 32 if setup.quick else 64
    specs = [s for s in all_blocks() if is_attention(s)]
    contiguous, bad = [], []
    for spec in specs:
        try:
            finite = block_step(spec, setup, size, torch.channels_last)
        except RuntimeError:
            contiguous.append(spec.name)
            finite = block_step(spec, setup, size, torch.contiguous_format)
        if not finite:
            bad.append(spec.name)
    precision = "fp16 autocast" if setup.cuda else "fp32"
    if bad:
        raise CheckFailed(f"non-finite output or gradients under {precision}: {', '.join(bad)}")
    return (f"{len(specs)} blocks, {precision}, 2x3x{size}x{size}: all finite; channels-last except "
            f"{', '.join(contiguous) or 'none'} (no NHWC: run contiguous, as training does)")


def trained_weights(run: Path) -> dict[str, torch.Tensor]:
    from yolo_attn.checkpoint import load_model

    return load_model(run / "weights" / "last.pt").model.state_dict()


def deterministic_twice(setup: Setup) -> str:
    if setup.quick:
        from yolo_attn.data.synthetic import generate_demo_dataset

        data, size, epochs = str(generate_demo_dataset(setup.work / "demo", n_train=4, n_val=2, img_size=64)), "32", "1"
    else:
        need(COCO8)
        data, size, epochs = str(COCO8), "320", "2"
    runs = []
    for name in ("first", "second"):
        yolo_attn(setup, "train", "--cfg", "yolov5n.yaml", "--data", data, "--epochs", epochs, "--img", size,
                  "--batch", "4", "--workers", "0", "--deterministic", "--noplots", "--device", setup.device,
                  "--project", str(setup.work / "deterministic"), "--name", name)
        runs.append(setup.work / "deterministic" / name)
    weights = [trained_weights(run) for run in runs]
    different = [k for k, v in weights[0].items() if not torch.equal(v, weights[1][k])]
    tables = [(run / "results.csv").read_text().splitlines() for run in runs]
    same_metrics = [line.split(",")[:-1] for line in tables[0]] == [line.split(",")[:-1] for line in tables[1]]
    if different or not same_metrics:
        raise CheckFailed(f"two --deterministic runs differ: {len(different)} tensors ({', '.join(different[:5])}), "
                          f"results.csv {'the same' if same_metrics else 'different'}")
    return f"{epochs} epoch(s) at {size} px twice: {len(weights[0])} tensors and results.csv identical"


def torchrun_and_nccl(setup: Setup) -> str:
    need(COCO8)
    summary = yolo_attn(setup, "train", "--cfg", "yolov5n.yaml", "--data", str(COCO8), "--epochs", "1", "--img", "320",
                        "--batch", "4", "--workers", "0", "--noplots", "--device", setup.device, "--project",
                        str(setup.work / "torchrun"),
                        launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m",
                                  "yolo_attn"))
    return f"torchrun train: mAP50-95 {summary['map50_95']:.4f}; {nccl_ddp_step(setup)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nccl_ddp_step(setup: Setup) -> str:
    """One DDP forward/backward of yolov5n over an NCCL group of one GPU (NCCL takes one rank per GPU), and an
    all-reduce."""
    import torch.distributed as dist

    from yolo_attn import build_model

    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        device = setup.torch_device
        model = build_model(ROOT / "configs" / "models" / "yolov5n.yaml").to(device).train()
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
        outputs = ddp(torch.rand(2, 3, 320, 320, device=device))
        sum(o.float().mean() for o in outputs).backward()
        total = torch.ones(1, device=device)
        dist.all_reduce(total)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if total.item() != 1.0 or not grads or not all(torch.isfinite(g).all() for g in grads):
            raise CheckFailed("NCCL DDP step: non-finite gradients or a wrong all-reduce")
        return f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))} DDP step and all-reduce"
    finally:
        dist.destroy_process_group()


def cam_and_export(setup: Setup) -> str:
    need(WEIGHTS, BUS)
    size = "160" if setup.quick else "640"
    cam = yolo_attn(setup, "cam", "--weights", str(WEIGHTS), "--source", str(BUS), "--img", size, "--device",
                    setup.device, "--project", str(setup.work / "cam"))
    try:
        import onnx  # noqa: F401  (the export extra)
    except ImportError:
        return f"cam: {json.dumps(cam)[:120]}...; export skipped: onnx not installed (pip install 'yolo-attn[export]')"
    onnx_file = setup.work / "yolov5n.onnx"
    export = yolo_attn(setup, "export", "--weights", str(WEIGHTS), "--img", size, "--device", setup.device,
                       "--output", str(onnx_file))
    if not onnx_file.is_file():
        raise CheckFailed(f"export wrote no {onnx_file}")
    return f"cam: figure written; export: {export['size_mb']} MB ONNX, input {export['input']}"


def throughput(setup: Setup) -> str:
    """Optimisation steps of yolov5n at 640 px, batch 16, AMP (``scripts/bench_train.py``), fp16 inference at batch
    32, and the peak GPU memory of each."""
    from bench_train import train_rate

    from yolo_attn import build_model

    hyp = yaml.safe_load((ROOT / "configs" / "hyps" / "hyp.scratch-low.yaml").read_text())
    torch.cuda.reset_peak_memory_stats()
    train_ips = train_rate("yolov5n", hyp, 640, 16, 20, setup.torch_device)
    train_peak = torch.cuda.max_memory_allocated() / 2**30
    model = build_model(ROOT / "configs" / "models" / "yolov5n.yaml").to(setup.torch_device).eval().half()
    images = torch.rand(32, 3, 640, 640, device=setup.torch_device).half()
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        model(images)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            model(images)
        torch.cuda.synchronize()
    val_ips = 32 * 20 / (time.perf_counter() - start)
    val_peak = torch.cuda.max_memory_allocated() / 2**30
    return (f"yolov5n 640 px: train {train_ips:.0f} img/s (batch 16, AMP; peak {train_peak:.2f} GiB), inference "
            f"{val_ips:.0f} img/s (batch 32, fp16; peak {val_peak:.2f} GiB)")


def upstream_scripts(setup: Setup) -> str:
    raise Skipped("YOLOv5's and Ultralytics' own scripts are not run: they need their own weights, which nothing here "
                  "downloads")


# name, check, where it runs ("cuda", "cpu" or "any")
PLAN: list[tuple[str, Callable[[Setup], str], str]] = [
    ("val yolov5n-v6.1 on COCO128: CUDA vs CPU", val_cuda_vs_cpu, "cuda"),
    ("3-epoch AMP fine-tune: CUDA vs CPU", amp_finetune, "cuda"),
    ("attention blocks forward+backward, fp16 autocast + channels-last", attention_blocks, "cuda"),
    ("attention blocks forward+backward, fp32 channels-last on the CPU", attention_blocks, "cpu"),
    ("--deterministic training twice", deterministic_twice, "any"),
    ("torchrun DDP with NCCL on one GPU", torchrun_and_nccl, "cuda"),
    ("cam and export", cam_and_export, "any"),
    ("throughput and peak GPU memory", throughput, "cuda"),
    ("YOLOv5 / Ultralytics scripts beside ours", upstream_scripts, "cuda"),
]


def run_check(name: str, check: Callable[[Setup], str], setup: Setup) -> Outcome:
    start = time.perf_counter()
    try:
        status, detail = "pass", check(setup)
    except Skipped as e:
        status, detail = "skipped", str(e)
    except Exception as e:  # any failure is a result of the acceptance run, reported with the others
        status, detail = "FAIL", f"{type(e).__name__}: {e}"
    return Outcome(name, status, detail.replace("\n", " ").replace("|", "/"), time.perf_counter() - start)


def report(outcomes: list[Outcome], setup: Setup, seconds: float) -> str:
    where = torch.cuda.get_device_name(setup.torch_device) if setup.cuda else "CPU (CUDA checks skipped)"
    lines = ["# GPU acceptance", "",
             f"`python scripts/gpu_acceptance.py{' --quick' if setup.quick else ''}` on {where}, torch "
             f"{torch.__version__}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"{seconds:.0f} s in all.", "", "| check | result | figures | s |", "|---|---|---|---|"]
    lines += [f"| {o.name} | {o.status} | {o.detail} | {o.seconds:.0f} |" for o in outcomes]
    skipped = [o.name for o in outcomes if o.status == "skipped"]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="0" if torch.cuda.is_available() else "cpu",
                        help="CUDA index, or cpu (default: 0 when CUDA is there)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the report's file (default on CUDA: docs/gpu.md; on the CPU: none)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (always on the CPU)")
    args = parser.parse_args(argv)
    device = "cpu" if args.device.strip().lower() == "cpu" else args.device.replace("cuda:", "")
    out = args.out or (ROOT / "docs" / "gpu.md" if device != "cpu" else None)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-acceptance-") as work:
        setup = Setup(device, args.quick or device == "cpu", Path(work))
        outcomes = []
        for name, check, where in PLAN:
            if where != "any" and (where == "cuda") != setup.cuda:
                if where == "cuda":
                    outcomes.append(Outcome(name, "skipped", "needs CUDA", 0.0))
                continue
            outcomes.append(run_check(name, check, setup))
            print(f"{outcomes[-1].status:>7}  {name}: {outcomes[-1].detail}", flush=True)
    text = report(outcomes, setup, time.perf_counter() - start)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        print(f"report written to {out}")
    print(text)
    return 1 if any(o.status == "FAIL" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
