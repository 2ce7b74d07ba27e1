"""CPU burnt under contention: one training alone, then two at once on the same cores, CPU time per epoch.

    python scripts/bench_contention.py [--cfg yolov5n.yaml] [--data ../shared/data/coco128/coco128.yaml]
        [--img 320] [--epochs 1] [--rounds 1] [--threads 0 2]

For each ``--threads`` setting (0: the thread governor, yolo-attn's default; N: a fixed team of N, the behaviour
before the governor with N = the cores), each round runs one training alone and then two identical ones started
together, and records every process tree's wall, user and system CPU (``wait4``). Prints, per setting, the medians
and the two ratios the speed issue asks for: CPU time of a training that shared the cores over its CPU time alone
(goal <= 1.3), and the wall time alone against the first setting's (the quiet-machine time must not get worse).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def start(args: argparse.Namespace, threads: int, folder: Path, name: str) -> tuple[subprocess.Popen, float]:
    """One ``yolo-attn train`` in the background, its output into ``<name>.log``; with its start time."""
    command = [sys.executable, "-m", "yolo_attn", "-q", "train", "--cfg", args.cfg, "--data", str(args.data),
               "--img", str(args.img), "--epochs", str(args.epochs), "--batch", str(args.batch), "--threads",
               str(threads), "--noplots", "--project", str(folder), "--name", name, "--exist-ok"]
    with open(folder / f"{name}.log", "w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), time.perf_counter()


def wait(process: subprocess.Popen, started: float) -> dict[str, float]:
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"training failed: {process.args}")
    return {"wall_s": time.perf_counter() - started, "cpu_s": usage.ru_utime + usage.ru_stime}


def one_round(args: argparse.Namespace, threads: int, folder: Path, index: int) -> dict[str, list[dict]]:
    alone = [wait(*start(args, threads, folder, f"alone-{threads}-{index}"))]
    pair = [start(args, threads, folder, f"pair{k}-{threads}-{index}") for k in (0, 1)]
    shared = [wait(*p) for p in pair]
    print(f"threads {threads} round {index}: alone {alone[0]}, together {shared}", flush=True)
    return {"alone": alone, "shared": shared}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cfg", default="yolov5n.yaml")
    p.add_argument("--data", type=Path, default=SHARED / "data" / "coco128" / "coco128.yaml")
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threads", type=int, nargs="+", default=[0, os.cpu_count() or 1],
                   help="settings to compare (0: the governor; N: fixed)")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_contention_"))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()}, runs in {folder}", flush=True)
    runs: dict[int, dict[str, list[dict]]] = {t: {"alone": [], "shared": []} for t in args.threads}
    for index in range(args.rounds):  # settings alternate round by round, so both see the same machine
        for threads in args.threads:
            for kind, records in one_round(args, threads, folder, index).items():
                runs[threads][kind] += records
    print("| --threads | alone wall s | alone CPU s | together wall s | together CPU s (each) | CPU together / alone |"
          " wall alone / first setting's |\n|---|---:|---:|---:|---:|---:|---:|")
    first_wall = statistics.median(r["wall_s"] for r in runs[args.threads[0]]["alone"])
    for threads, kinds in runs.items():
        med = {f"{k}_{m}": statistics.median(r[m] for r in kinds[k]) for k in kinds for m in ("wall_s", "cpu_s")}
        print(f"| {threads or 'governor'} | {med['alone_wall_s']:.1f} | {med['alone_cpu_s']:.1f} | "
              f"{med['shared_wall_s']:.1f} | {med['shared_cpu_s']:.1f} | "
              f"{med['shared_cpu_s'] / med['alone_cpu_s']:.2f} | {med['alone_wall_s'] / first_wall:.2f} |")


if __name__ == "__main__":
    main()
