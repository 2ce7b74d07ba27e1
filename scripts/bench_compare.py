"""``yolo-attn val`` / ``train`` against YOLOv5's own ``val.py`` / ``train.py``, side by side on one machine.

    python scripts/bench_compare.py --yolov5 /path/to/yolov5 --yolov5-path /path/to/its/extra/site-packages \\
        [--weights ../shared/weights/yolov5n-v6.1.pt] [--data ../shared/data/coco128/coco128.yaml] [--jobs val train]

Runs alternate (ours, YOLOv5, ours, YOLOv5, ...) so both see the same machine load; one untimed val of each
side first fills the label caches. Each run is one process tree: wall, user and system CPU of the tree,
peak RSS of its largest process (as ``wait4`` reports it), the load average, and the metrics it printed.
Prints the medians and the ratio ours / YOLOv5.

YOLOv5 is used as checked out (not vendored): its missing Python packages come from ``--yolov5-path``
(put first on its PYTHONPATH only), nothing is downloaded (``YOLO_OFFLINE``; a DejaVu font stands in for
its Arial download), and it reads the same images and label files through a folder of links in the
scratch folder, because it resolves a data YAML's relative paths against its own checkout and writes its
label cache beside the labels (ours keeps its cache in ``~/.cache``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
METRICS = ("precision", "recall", "map50", "map50_95")


def link_dataset(data_yaml: Path, scratch: Path) -> Path:
    """A copy of ``data_yaml`` whose ``path`` is a scratch folder mirroring its images (file links) and labels."""
    data = yaml.safe_load(data_yaml.read_text())
    root = (data_yaml.parent / data.get("path", "")).resolve()
    view = scratch / "data" / data_yaml.stem
    for split in {data[k] for k in ("train", "val", "test") if isinstance(data.get(k), str)}:
        images, labels = view / split, view / split.replace("images", "labels", 1)
        images.mkdir(parents=True, exist_ok=True)
        for image in (root / split).iterdir():
            if not (images / image.name).exists():
                (images / image.name).symlink_to(image)
        labels.parent.mkdir(parents=True, exist_ok=True)
        if not labels.exists():
            labels.symlink_to(root / split.replace("images", "labels", 1), target_is_directory=True)
    out = scratch / f"{data_yaml.stem}-yolov5.yaml"
    out.write_text(yaml.safe_dump({**data, "path": str(view)}, sort_keys=False))
    return out


def yolov5_env(scratch: Path, extra_path: str) -> dict[str, str]:
    """YOLOv5's environment: its extra packages on PYTHONPATH, offline, fonts already in its config folder."""
    config = scratch / "yolov5-config"
    config.mkdir(parents=True, exist_ok=True)
    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (config / name).exists():
            shutil.copy(font, config / name)
    return {**base_env(), "PYTHONPATH": extra_path, "YOLO_OFFLINE": "1", "YOLOV5_CONFIG_DIR": str(config),
            "YOLO_CONFIG_DIR": str(config)}


def base_env() -> dict[str, str]:
    """The caller's environment without thread or allocator settings, which each side makes for itself."""
    dropped = ("OMP_", "MKL_", "GOMP_", "MALLOC_", "PYTHONPATH")
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped)}


def commands(args: argparse.Namespace, job: str, scratch: Path, v5_data: Path) -> dict[str, list[str]]:
    """(ours, yolov5) command lines of ``job`` with the same weights, data, size, batch (and epochs)."""
    common = ["--weights", str(args.weights), "--img", str(args.img), "--batch", str(args.batch), "--exist-ok",
              "--name", "exp"]
    ours = [sys.executable, "-m", "yolo_attn", job, "--data", str(args.data), *common,
            "--project", str(scratch / f"ours-{job}")]
    yolov5 = [sys.executable, f"{job}.py", "--data", str(v5_data), *common, "--project", str(scratch / f"v5-{job}")]
    if job == "train":
        ours += ["--epochs", str(args.epochs), "--json"]
        yolov5 += ["--epochs", str(args.epochs), "--cfg", "", "--hyp", "data/hyps/hyp.scratch-low.yaml"]
    else:
        ours.append("--json")
    return {"ours": ours, "yolov5": yolov5}


def measure(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> dict[str, float]:
    """Run one process tree; wall, CPU of the tree, peak RSS of its largest process, load average before/after."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}); see {log}")
    return {"wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
            "peak_rss_gib": usage.ru_maxrss / 2**20, "load_before": load, "load_after": os.getloadavg()[0]}


def parse_metrics(text: str) -> dict[str, float]:
    """P, R, mAP50, mAP50-95: from our last JSON line, or YOLOv5's last ``all`` row."""
    lines = text.strip().splitlines()
    if lines and lines[-1].startswith("{"):
        result = json.loads(lines[-1])
        return {k: float(result[k]) for k in METRICS}
    rows = [line.split() for line in lines if line.split()[:1] == ["all"]]
    return dict(zip(METRICS, map(float, rows[-1][3:7]), strict=True)) if rows else {}


def run_job(args: argparse.Namespace, job: str, scratch: Path, v5_data: Path, v5_env: dict[str, str]) -> dict:
    """Alternate ours and YOLOv5 ``args.runs`` (val) or ``args.train_runs`` (train) times each."""
    cmds = commands(args, job, scratch, v5_data)
    ours_env = {**base_env(), "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), args.ours_path]))}
    places = {"ours": (ROOT, ours_env), "yolov5": (args.yolov5, v5_env)}
    runs: dict[str, list[dict]] = {"ours": [], "yolov5": []}
    warmups = 1 if job == "val" else 0
    for i in range(-warmups, args.runs if job == "val" else args.train_runs):
        for side, (cwd, env) in places.items():
            log = scratch / f"{job}-{side}-{i}.log"
            record = measure(cmds[side], cwd, env, log)
            text = log.read_text(errors="replace")
            record.update(parse_metrics(text), nms_time_limit_warnings=text.count("NMS time limit"))
            print(f"{job} {side} run {i}: " + "  ".join(f"{k} {v:.3f}" for k, v in record.items()), flush=True)
            if i >= 0:
                runs[side].append(record)
    return {"commands": cmds, "runs": runs}


def summarize(job: str, result: dict) -> list[str]:
    """Table rows: medians per side (peak RSS: the highest), then the ratio ours / YOLOv5."""
    rows, medians = [], {}
    for side, runs in result["runs"].items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "user_s", "sys_s")}
        medians[side] = med
        peak = max(r["peak_rss_gib"] for r in runs)
        load = f"{min(r['load_before'] for r in runs):.1f}-{max(r['load_after'] for r in runs):.1f}"
        scores = " ".join(f"{runs[-1].get(k, float('nan')):.3f}" for k in METRICS)
        times = " | ".join(f"{med[k]:.1f}" for k in ("wall_s", "user_s", "sys_s"))
        rows.append(f"| {job} | {side} | {len(runs)} | {times} | {peak:.2f} | {load} | {scores} |")
    ratio = medians["ours"]["wall_s"] / medians["yolov5"]["wall_s"]
    rows.append(f"| {job} | ratio ours/YOLOv5 | | {ratio:.2f} | "
                f"{medians['ours']['user_s'] / medians['yolov5']['user_s']:.2f} | "
                f"{medians['ours']['sys_s'] / max(medians['yolov5']['sys_s'], 1e-9):.2f} | | | |")
    return rows


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--yolov5", type=Path, required=True, help="a YOLOv5 checkout (ultralytics/yolov5)")
    p.add_argument("--yolov5-path", default="", help="PYTHONPATH for YOLOv5's extra packages (pip install --target)")
    p.add_argument("--ours-path", default="", help="extra PYTHONPATH for our side (e.g. an optional package)")
    p.add_argument("--weights", type=Path, default=SHARED / "weights" / "yolov5n-v6.1.pt")
    p.add_argument("--data", type=Path, default=SHARED / "data" / "coco128" / "coco128.yaml")
    p.add_argument("--img", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--runs", type=int, default=3, help="timed val runs per side")
    p.add_argument("--train-runs", type=int, default=1, help="timed train runs per side")
    p.add_argument("--jobs", nargs="+", choices=("val", "train"), default=["val", "train"])
    p.add_argument("--scratch", type=Path, help="folder for runs, logs and the linked dataset (default: a temp dir)")
    args = p.parse_args()
    args.yolov5, args.weights, args.data = args.yolov5.resolve(), args.weights.resolve(), args.data.resolve()
    return args


def main() -> None:
    args = parse_args()
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="bench_compare_"))
    scratch.mkdir(parents=True, exist_ok=True)
    v5_data, v5_env = link_dataset(args.data, scratch), yolov5_env(scratch, args.yolov5_path)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()}, logs in {scratch}")
    header = ["| job | side | runs | wall s (median) | user s | sys s | peak RSS GiB | load | P R mAP50 mAP50-95 |",
              "|---|---|---:|---:|---:|---:|---:|---|---|"]
    rows, results = [], {}
    for job in args.jobs:
        results[job] = run_job(args, job, scratch, v5_data, v5_env)
        rows += summarize(job, results[job])
    print("\n".join(header + rows))
    (scratch / "bench_compare.json").write_text(json.dumps(results, indent=1, default=str))
    print(json.dumps({job: {side: [r["wall_s"] for r in runs] for side, runs in res["runs"].items()}
                      for job, res in results.items()}))


if __name__ == "__main__":
    main()
