"""yolo-attn against the references users would pick instead, side by side on one machine: YOLOv5's own
``val.py`` / ``train.py`` / ``detect.py``, and Ultralytics' ``yolo`` command.

    python scripts/bench_compare.py [--ultralytics /path/to/venv/bin/yolo] \\
        [--yolov5 /path/to/yolov5 --yolov5-path /path/to/its/extra/site-packages] \\
        [--jobs train1 train3 finetune val predict] [--runs 3] [--train-runs 1]

Jobs: ``train1`` / ``train3``: ``--cfg`` (yolo11n.yaml) from scratch for 1 / 3 epochs (Ultralytics only);
``finetune``: ``--epochs`` (3) from the reference's weights; ``val``; ``predict`` on ``--source`` (COCO128's
images). YOLOv5's weights are ``--weights`` (the official yolov5n-v6.1.pt); Ultralytics' are
``--ultralytics-weights``, by default the ``last.pt`` its own ``train3`` job wrote (no trained yolo11n.pt can be
downloaded here). Both tools run at their defaults but for the shared data, image size, batch and CPU.

Runs alternate (ours, reference, ours, reference, ...) so both see the same machine load; val and predict first
run one untimed pair, which fills the label and page caches. Each run is one process tree: wall, user and system
CPU of the tree, peak RSS of its largest process (as ``wait4`` reports it), the load average, and the metrics it
printed. Prints the medians and the ratio ours / reference.

The references are used as installed or checked out (nothing is vendored): YOLOv5's missing Python packages come
from ``--yolov5-path`` (put first on its PYTHONPATH only); nothing is downloaded (``YOLO_OFFLINE``; a DejaVu font
stands in for their Arial download); each reads the same images and label files through a folder of links in the
scratch folder, because they write their label caches beside the labels (ours keeps its cache in ``~/.cache``).
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
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
METRICS = ("precision", "recall", "map50", "map50_95")


def link_dataset(data_yaml: Path, scratch: Path, tool: str) -> Path:
    """A copy of ``data_yaml`` whose ``path`` is ``tool``'s scratch folder mirroring its images (file links) and
    labels: each reference writes its label cache beside the labels, so each gets a folder of its own."""
    data = yaml.safe_load(data_yaml.read_text())
    root = (data_yaml.parent / data.get("path", "")).resolve()
    view = scratch / f"data-{tool}" / data_yaml.stem
    for split in {data[k] for k in ("train", "val", "test") if isinstance(data.get(k), str)}:
        images, labels = view / split, view / split.replace("images", "labels", 1)
        images.mkdir(parents=True, exist_ok=True)
        for image in (root / split).iterdir():
            if not (images / image.name).exists():
                (images / image.name).symlink_to(image)
        labels.parent.mkdir(parents=True, exist_ok=True)
        if not labels.exists():
            labels.symlink_to(root / split.replace("images", "labels", 1), target_is_directory=True)
    out = scratch / f"{data_yaml.stem}-{tool}.yaml"
    out.write_text(yaml.safe_dump({**data, "path": str(view)}, sort_keys=False))
    return out


def reference_env(scratch: Path, extra_path: str) -> dict[str, str]:
    """A reference's environment: its extra packages on PYTHONPATH, offline, fonts already in its config folder."""
    config = scratch / "reference-config"
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


@dataclass
class Reference:
    """One reference tool: where it runs, its environment, its copy of the data, the weights it starts from."""

    name: str
    cwd: Path
    env: dict[str, str]
    data: Path
    weights: Path | None


def ours_command(args: argparse.Namespace, job: str, scratch: Path, ref: Reference) -> list[str]:
    """Our command line of ``job``: the same model or weights, data, size and batch as the reference's."""
    weights = ref.weights
    run = ["--img", str(args.img), "--project", str(scratch / f"ours-{ref.name}-{job}"), "--name", "exp",
           "--exist-ok"]
    base = [sys.executable, "-m", "yolo_attn"]
    if job == "predict":
        return [*base, "predict", "--weights", str(weights), "--source", str(args.source), *run, "--json"]
    run = ["--data", str(args.data), "--batch", str(args.batch), *run, "--json"]
    if job == "val":
        return [*base, "val", "--weights", str(weights), *run]
    start = ["--weights", str(weights)] if job == "finetune" else ["--cfg", args.cfg]
    return [*base, "train", *start, "--epochs", str(EPOCHS.get(job, args.epochs)), *run]


def yolov5_command(args: argparse.Namespace, job: str, scratch: Path, ref: Reference) -> list[str]:
    """YOLOv5's ``val.py`` / ``train.py`` (a fine-tune) / ``detect.py`` line for ``job``."""
    run = ["--img", str(args.img), "--project", str(scratch / f"yolov5-{job}"), "--name", "exp", "--exist-ok"]
    if job == "predict":
        return [sys.executable, "detect.py", "--weights", str(ref.weights), "--source", str(args.source), *run]
    run = ["--data", str(ref.data), "--batch", str(args.batch), *run]
    if job == "val":
        return [sys.executable, "val.py", "--weights", str(ref.weights), *run]
    return [sys.executable, "train.py", "--weights", str(ref.weights), "--cfg", "", "--epochs", str(args.epochs),
            "--hyp", "data/hyps/hyp.scratch-low.yaml", *run]


def ultralytics_command(args: argparse.Namespace, job: str, scratch: Path, ref: Reference) -> list[str]:
    """Ultralytics' ``yolo`` line for ``job``, at its defaults but for the shared size, batch and device."""
    run = [f"imgsz={args.img}", "device=cpu", f"project={scratch / f'ultralytics-{job}'}", "name=exp",
           "exist_ok=True"]
    if job == "predict":
        return [str(args.ultralytics), "predict", f"model={ref.weights}", f"source={args.source}", *run]
    run = [f"data={ref.data}", f"batch={args.batch}", *run]
    if job == "val":
        return [str(args.ultralytics), "val", f"model={ref.weights}", *run]
    model = ref.weights if job == "finetune" else args.cfg
    return [str(args.ultralytics), "train", f"model={model}", f"epochs={EPOCHS.get(job, args.epochs)}", *run]


COMMANDS = {"yolov5": yolov5_command, "ultralytics": ultralytics_command}
JOBS = {"yolov5": ("val", "finetune", "predict"), "ultralytics": ("train1", "train3", "finetune", "val", "predict")}
EPOCHS = {"train1": 1, "train3": 3}  # finetune: --epochs


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
        return {k: float(result[k]) for k in METRICS if k in result}
    rows = [line.split() for line in lines if line.split()[:1] == ["all"]]
    return dict(zip(METRICS, map(float, rows[-1][3:7]), strict=True)) if rows else {}


def run_job(args: argparse.Namespace, job: str, scratch: Path, ref: Reference) -> dict:
    """Alternate ours and the reference, ``args.runs`` times each (one untimed warm-up pair first for val and
    predict, which fills the label caches and the page cache)."""
    cmds = {"ours": ours_command(args, job, scratch, ref), ref.name: COMMANDS[ref.name](args, job, scratch, ref)}
    ours_env = {**base_env(), "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), args.ours_path]))}
    places = {"ours": (ROOT, ours_env), ref.name: (ref.cwd, ref.env)}
    runs: dict[str, list[dict]] = {side: [] for side in places}
    warmups = 1 if job in ("val", "predict") else 0
    for i in range(-warmups, args.runs if job in ("val", "predict") else args.train_runs):
        for side, (cwd, env) in places.items():
            log = scratch / f"{ref.name}-{job}-{side}-{i}.log"
            record = measure(cmds[side], cwd, env, log)
            record.update(parse_metrics(log.read_text(errors="replace")))
            print(f"{ref.name} {job} {side} run {i}: " + "  ".join(f"{k} {v:.3f}" for k, v in record.items()),
                  flush=True)
            if i >= 0:
                runs[side].append(record)
    return {"commands": cmds, "runs": runs}


def summarize(job: str, result: dict) -> list[str]:
    """Table rows: medians per side (peak RSS: the highest), then the ratio ours / reference."""
    rows, medians = [], {}
    for side, runs in result["runs"].items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "user_s", "sys_s")}
        medians[side] = med
        peak = max(r["peak_rss_gib"] for r in runs)
        load = f"{min(r['load_before'] for r in runs):.1f}-{max(r['load_after'] for r in runs):.1f}"
        scores = " ".join(f"{runs[-1].get(k, float('nan')):.3f}" for k in METRICS)
        times = " | ".join(f"{med[k]:.1f}" for k in ("wall_s", "user_s", "sys_s"))
        rows.append(f"| {job} | {side} | {len(runs)} | {times} | {peak:.2f} | {load} | {scores} |")
    ours, reference = (medians[side] for side in result["runs"])
    ratios = " | ".join(f"{ours[k] / max(reference[k], 1e-9):.2f}" for k in ("wall_s", "user_s", "sys_s"))
    rows.append(f"| {job} | ratio ours/{list(result['runs'])[1]} | | {ratios} | | | |")
    return rows


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--yolov5", type=Path, help="a YOLOv5 checkout (ultralytics/yolov5)")
    p.add_argument("--yolov5-path", default="", help="PYTHONPATH for YOLOv5's extra packages (pip install --target)")
    p.add_argument("--ultralytics", type=Path, help="the `yolo` executable of an installed ultralytics package")
    p.add_argument("--ours-path", default="", help="extra PYTHONPATH for our side (e.g. an optional package)")
    p.add_argument("--weights", type=Path, default=SHARED / "weights" / "yolov5n-v6.1.pt",
                   help="YOLOv5's val / fine-tune / predict weights")
    p.add_argument("--ultralytics-weights", type=Path,
                   help="Ultralytics' val / fine-tune / predict weights (default: the last.pt of its train3 job)")
    p.add_argument("--cfg", default="yolo11n.yaml", help="the model the from-scratch train jobs build (both tools)")
    p.add_argument("--data", type=Path, default=SHARED / "data" / "coco128" / "coco128.yaml")
    p.add_argument("--source", type=Path, default=SHARED / "data" / "coco128" / "images" / "train2017",
                   help="predict's images")
    p.add_argument("--img", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3, help="fine-tune epochs")
    p.add_argument("--runs", type=int, default=3, help="timed val / predict runs per side")
    p.add_argument("--train-runs", type=int, default=1, help="timed train / fine-tune runs per side")
    p.add_argument("--jobs", nargs="+", choices=("train1", "train3", "finetune", "val", "predict"),
                   default=["train1", "train3", "finetune", "val", "predict"], help="each reference runs those it has")
    p.add_argument("--scratch", type=Path, help="folder for runs, logs and the linked dataset (default: a temp dir)")
    args = p.parse_args()
    if args.yolov5 is None and args.ultralytics is None:
        p.error("name a reference: --yolov5 and/or --ultralytics")
    args.weights, args.data, args.source = args.weights.resolve(), args.data.resolve(), args.source.resolve()
    return args


def references(args: argparse.Namespace, scratch: Path) -> list[Reference]:
    """The references named on the command line, each with its environment, its data view and its weights."""
    refs = []
    if args.ultralytics is not None:
        refs.append(Reference("ultralytics", scratch, reference_env(scratch, ""),
                              link_dataset(args.data, scratch, "ultralytics"),
                              args.ultralytics_weights or scratch / "ultralytics-train3" / "exp" / "weights" /
                              "last.pt"))
    if args.yolov5 is not None:
        refs.append(Reference("yolov5", args.yolov5.resolve(), reference_env(scratch, args.yolov5_path),
                              link_dataset(args.data, scratch, "yolov5"),
                              args.weights))
    return refs


def main() -> None:
    args = parse_args()
    scratch = (args.scratch or Path(tempfile.mkdtemp(prefix="bench_compare_"))).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()}, logs in {scratch}")
    header = ["| job | side | runs | wall s (median) | user s | sys s | peak RSS GiB | load | P R mAP50 mAP50-95 |",
              "|---|---|---:|---:|---:|---:|---:|---|---|"]
    rows, results = [], {}
    for ref in references(args, scratch):
        for job in (j for j in args.jobs if j in JOBS[ref.name]):
            results[f"{ref.name}-{job}"] = result = run_job(args, job, scratch, ref)
            rows += summarize(job, result)
            (scratch / "bench_compare.json").write_text(json.dumps(results, indent=1, default=str))
    print("\n".join(header + rows))


if __name__ == "__main__":
    main()
