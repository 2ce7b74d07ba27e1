"""Mutate real model YAMLs at random; every mutant must build or raise ``UserError``, quickly and in bounded memory.

Each case takes one config of the corpus (``configs/models``, ``configs/attention``, ``../shared/seed-configs``)
and applies one to three mutations: junk in ``from`` / ``number`` / module / args / top-level keys, type
swaps, huge numbers, duplicated, deleted or swapped layers. Cases run in a worker process that the parent
kills and restarts when a case runs over ``--timeout``; the worker's data segment is capped (``--mem-gb``)
so that a runaway allocation fails instead of waking the kernel's OOM killer.

    PYTHONPATH=. python scripts/fuzz_yaml.py --n 2000 --seed 0 [--timeout 60] [--mem-gb 4] [--limits small] [--show 3]

``--limits small`` (the default) builds under :data:`SMALL_LIMITS` so that a mutant that passes the guard
builds in seconds; ``--limits default`` uses the builder's defaults (1 G parameters, ...).

Outcomes: ``built``, ``user_error`` (a clean ``UserError``), ``crash`` (any other exception: a bug),
``memory`` (an allocation failure, even one reported as a ``UserError``), ``timeout``, ``worker_died``.
"""

from __future__ import annotations

import argparse
import collections
import copy
import datetime
import multiprocessing as mp
import random
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from yolo_attn.nn.resource_guard import ResourceLimits

ROOT = Path(__file__).resolve().parents[1]
SMALL = ("yolov5n.yaml", "yolov7-tiny.yaml")

JUNK: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2, 3, 7, 2**31, 10**9, 10**18, 2**100, -(10**9), 0.5, 1.5, -2.5, 1e300,
    float("nan"), float("inf"), -float("inf"), "", "x", "nc", "anchors", "None", "True", "3", "3.5", "1e999",
    "nc*2", "[1, 2]", "nn.ReLU()", "nn.Foo()", "nn.LeakyReLU('x')", "nn.PReLU(1000000000)", "nn.ReLU(1, 2, 3)",
    "__import__('os').getcwd()", "Conv", "nearest", [], [1], [None], [[1, 2]], [[[]]], ["nc"], [2**40],
    {"a": 1}, {}, datetime.date(2020, 1, 1), b"\x00",
)
SMALL_LIMITS = ResourceLimits(params=50_000_000, probe_bytes=2**30, probe_flops=5 * 10**10)
HUGE: tuple[Any, ...] = (10**4, 10**5, 10**6, 10**9, 10**12, 2**63, 1e6, 4096, 65536, 1e9)


def corpus(root: Path = ROOT) -> list[Path]:
    """Every model YAML of the project, then the configs published with the attention tutorials the project
    started from (YOLOv7 + GAMAttention, YOLOv5l + DoubleAttention; ``../shared/seed-configs``) when present."""
    folders = (root / "configs" / "models", root / "configs" / "attention", root.parent / "shared" / "seed-configs")
    return [path for folder in folders for path in sorted(folder.glob("*.yaml"))]


def _layers(cfg: dict[str, Any]) -> list[tuple[str, int]]:
    return [(key, i) for key in ("backbone", "head") if isinstance(cfg.get(key), list) for i in range(len(cfg[key]))]


def _junk(rng: random.Random) -> Any:
    return copy.deepcopy(rng.choice(JUNK + HUGE if rng.random() < 0.3 else JUNK))


def _entry_mutation(position: int, values: Callable[[random.Random], Any]) -> Callable[..., str]:
    def mutate(cfg: dict[str, Any], rng: random.Random) -> str:
        key, i = rng.choice(_layers(cfg))
        entry = cfg[key][i]
        if not isinstance(entry, list) or len(entry) != 4:
            return "no-op"
        entry[position] = values(rng)
        return f"{key}[{i}][{position}] = {entry[position]!r}"

    return mutate


def _arg_mutation(cfg: dict[str, Any], rng: random.Random) -> str:
    """Replace, insert or delete one arg; args that are lists get junk inside too."""
    key, i = rng.choice(_layers(cfg))
    entry = cfg[key][i]
    if not isinstance(entry, list) or len(entry) != 4 or not isinstance(entry[3], list):
        return "no-op"
    args, action = entry[3], rng.choice(("replace", "replace", "huge", "insert", "delete", "nest"))
    j = rng.randrange(len(args) + 1)
    value = rng.choice(HUGE) if action == "huge" else _junk(rng)
    if action in ("replace", "huge") and j < len(args):
        args[j] = value
    elif action == "delete" and args:
        del args[min(j, len(args) - 1)]
    elif action == "nest" and j < len(args) and isinstance(args[j], list) and args[j]:
        args[j][rng.randrange(len(args[j]))] = value
    else:
        args.insert(j, value)
    return f"{key}[{i}] args {action} -> {args!r}"


def _layer_list_mutation(cfg: dict[str, Any], rng: random.Random) -> str:
    """Duplicate, delete, swap or junk a whole layer entry."""
    key, i = rng.choice(_layers(cfg))
    layers, action = cfg[key], rng.choice(("duplicate", "duplicate", "delete", "swap", "junk"))
    if action == "duplicate":
        layers.insert(i, copy.deepcopy(layers[i]))
    elif action == "delete":
        del layers[i]
    elif action == "swap":
        j = rng.randrange(len(layers))
        layers[i], layers[j] = layers[j], layers[i]
    else:
        layers[i] = rng.choice((_junk(rng), [-1, 1, "Conv"], [-1, 1, "Conv", [16], 5], layers[i][:2]))
    return f"{key}[{i}] {action}"


def _top_level_mutation(cfg: dict[str, Any], rng: random.Random) -> str:
    key = rng.choice(("nc", "depth_multiple", "width_multiple", "anchors", "activation", "ch", "channel_multiple",
                      "backbone", "head", "yaml_file", "unknown_key"))
    action = rng.choice(("junk", "junk", "huge", "delete")) if key not in ("backbone", "head") else rng.choice(
        ("junk", "delete", "empty"))
    if action == "delete":
        cfg.pop(key, None)
    else:
        cfg[key] = {"junk": _junk, "huge": lambda r: r.choice(HUGE), "empty": lambda r: []}[action](rng)
    return f"top-level {key} {action} -> {cfg.get(key)!r}"[:200]


def _module_name(rng: random.Random) -> Any:
    from yolo_attn.nn.registry import all_blocks

    return rng.choice(all_blocks()).name if rng.random() < 0.6 else _junk(rng)


MUTATIONS: tuple[tuple[str, Callable[..., str], float], ...] = (
    ("from", _entry_mutation(0, _junk), 2),
    ("number", _entry_mutation(1, lambda r: r.choice(HUGE) if r.random() < 0.5 else _junk(r)), 2),
    ("module", _entry_mutation(2, _module_name), 2),
    ("args", _arg_mutation, 4),
    ("layers", _layer_list_mutation, 2),
    ("top-level", _top_level_mutation, 2),
)


@dataclass(frozen=True)
class Case:
    """One mutant: where it came from, what was changed, and the YAML dict."""

    index: int
    source: str
    mutations: tuple[str, ...]
    cfg: dict[str, Any]


def make_case(index: int, seed: int, paths: list[Path], small_bias: float = 0.8) -> Case:
    """Case ``index`` of the stream seeded by ``seed`` (independent of the other cases)."""
    rng = random.Random(f"{seed}:{index}")
    small = [p for p in paths if p.name in SMALL]
    path = rng.choice(small if small and rng.random() < small_bias else paths)
    cfg = yaml.safe_load(path.read_text())
    cfg["yaml_file"] = path.name
    names, weights = zip(*((m[0], m[2]) for m in MUTATIONS), strict=True)
    done = []
    for name in rng.choices(names, weights, k=rng.choice((1, 1, 1, 2, 3))):
        mutate = dict((m[0], m[1]) for m in MUTATIONS)[name]
        done.append(f"{name}: {mutate(cfg, rng)}")
    return Case(index, path.name, tuple(done), cfg)


@dataclass(frozen=True)
class Outcome:
    """How a case ended: ``kind``, a one-line detail, seconds and how far the case raised the process's
    peak RSS above the RSS it started with, in MiB (0 when it stayed under an earlier peak)."""

    kind: str
    detail: str
    seconds: float
    rss_mib: float


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def run_case(case: Case, **build_kwargs: Any) -> Outcome:
    """Build ``case.cfg`` in this process and classify what happened."""
    from yolo_attn.errors import UserError
    from yolo_attn.nn.builder import build_model

    start, peak, rss = time.perf_counter(), _peak_rss_mib(), _rss_mib()
    try:
        build_model(case.cfg, **build_kwargs)
        kind, detail = "built", ""
    except UserError as e:
        kind, detail = "user_error", str(e)
    except MemoryError as e:
        kind, detail = "memory", repr(e)
    except Exception as e:  # noqa: BLE001 - the point is to find these
        frame = traceback.extract_tb(e.__traceback__)[-1]
        kind, detail = "crash", f"{type(e).__name__}: {e} at {Path(frame.filename).name}:{frame.lineno}"
    if "allocate memory" in detail:
        kind = "memory"
    new_peak = _peak_rss_mib()
    return Outcome(kind, detail[:300], time.perf_counter() - start, new_peak - rss if new_peak > peak else 0.0)


def _worker(conn: Any, mem_gb: float, limits: ResourceLimits | None) -> None:
    import torch

    import yolo_attn.nn.builder  # noqa: F401 - imported before the first case is timed

    torch.set_num_threads(1)
    limit = int(mem_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    conn.send("ready")
    while (case := conn.recv()) is not None:
        conn.send(run_case(case, limits=limits))


class Runner:
    """A worker process that runs cases one by one; restarted after a timeout or a death."""

    def __init__(self, mem_gb: float, limits: ResourceLimits | None):
        self.mem_gb, self.limits, self.process, self.conn = mem_gb, limits, None, None

    def run(self, case: Case, timeout: float) -> Outcome:
        if self.process is None:
            context = mp.get_context("spawn")
            self.conn, child = context.Pipe()
            self.process = context.Process(target=_worker, args=(child, self.mem_gb, self.limits), daemon=True)
            self.process.start()
            self.conn.recv()
        start = time.perf_counter()
        self.conn.send(case)
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except EOFError:
                kind = "worker_died"
        else:
            kind = "timeout"
        self.stop()
        return Outcome(kind, "", time.perf_counter() - start, 0.0)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join()
        self.process = None


def campaign(n: int, seed: int, timeout: float, runner: Runner, show: int) -> collections.Counter:
    """Run ``n`` cases; print each non-clean one and a summary of outcomes and distinct crash sites."""
    paths, counts = corpus(), collections.Counter()
    examples: dict[str, list[tuple[Case, Outcome]]] = collections.defaultdict(list)
    slowest: list[tuple[float, Case]] = []
    try:
        for index in range(n):
            case = make_case(index, seed, paths)
            outcome = runner.run(case, timeout)
            counts[outcome.kind] += 1
            slowest = sorted(slowest + [(outcome.seconds, case)], key=lambda s: -s[0])[:5]
            if outcome.kind not in ("built", "user_error") or outcome.rss_mib > 2048:
                key = f"{outcome.kind}: {outcome.detail[:120]}"
                examples[key].append((case, outcome))
                print(f"[{index}] {case.source} {case.mutations} -> {key} ({outcome.seconds:.1f} s)", flush=True)
            if (index + 1) % 100 == 0:
                print(f"{index + 1}/{n}: {dict(counts)}", flush=True)
    finally:
        runner.stop()
    print(f"\n{n} cases, seed {seed}: {dict(counts)}")
    for key, cases in sorted(examples.items(), key=lambda kv: -len(kv[1])):
        print(f"\n{len(cases)} x {key}")
        for case, outcome in cases[:show]:
            print(f"  [{case.index}] {case.source} {case.mutations} ({outcome.seconds:.1f} s)")
    print("\nslowest:", [(round(s, 1), c.index, c.source, c.mutations) for s, c in slowest])
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case before the worker is killed")
    parser.add_argument("--mem-gb", type=float, default=4.0, help="data-segment limit of the worker (RLIMIT_DATA)")
    parser.add_argument("--limits", choices=("small", "default"), default="small", help="the builder's resource limits")
    parser.add_argument("--show", type=int, default=3, help="examples printed per distinct finding")
    args = parser.parse_args()
    limits = SMALL_LIMITS if args.limits == "small" else ResourceLimits()
    campaign(args.n, args.seed, args.timeout, Runner(args.mem_gb, limits), args.show)


if __name__ == "__main__":
    main()
