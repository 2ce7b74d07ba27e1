"""How many of YOLOAir's model YAMLs yolo-attn builds with YOLOAir's exact parameter count.

YOLOAir (github.com/iscyy/yoloair) ships about 420 model YAMLs under ``configs/`` and ``configs2024/``.
``tests/fixtures/yoloair/param_counts.json`` holds the parameter count YOLOAir's own ``models/yolo.py``
``Model`` gives for each YAML it builds (nc as written). This script builds every YAML of a YOLOAir
checkout with ``yolo_attn.build_model`` and sorts it into

- exact:     built, same parameter count as YOLOAir's;
- different: built, another count (or YOLOAir itself does not build it);
- refused:   ``ModelConfigError`` (the message is printed with ``--verbose``);
- crashed:   any other exception (a bug: every refusal should be a ``ModelConfigError``).

    python scripts/yoloair_coverage.py /path/to/yoloair [--verbose] [--json out.json] [--configs A.yaml ...]

``--configs`` checks only the given YAMLs (paths inside the checkout); the summary then counts only those.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter
from pathlib import Path

import torch

from yolo_attn import build_model
from yolo_attn.nn.builder import ModelConfigError

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "yoloair" / "param_counts.json"
CONFIG_DIRS = ("configs", "configs2024")


def classify(path: Path, reference: int | None) -> tuple[str, str]:
    """(outcome, detail) for one YAML; ``reference`` is YOLOAir's count or None when YOLOAir fails."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_model(path)
    except ModelConfigError as e:
        return "refused", str(e)
    except Exception as e:  # noqa: BLE001 - a crash is what this script reports
        return "crashed", f"{type(e).__name__}: {e}"
    params = sum(p.numel() for p in model.parameters())
    if params == reference:
        return "exact", f"{params:,}"
    return "different", f"{params:,} (YOLOAir: {'fails' if reference is None else f'{reference:,}'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("yoloair", type=Path, help="a YOLOAir checkout (its configs/ and configs2024/ are read)")
    parser.add_argument("--fixture", type=Path, default=FIXTURE, help="YOLOAir's parameter counts (JSON)")
    parser.add_argument("--verbose", action="store_true", help="print one line per YAML")
    parser.add_argument("--json", type=Path, help="write {config: [outcome, detail]} here")
    parser.add_argument("--configs", nargs="+", help="only these YAMLs (paths inside the checkout)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    counts: dict[str, int] = json.loads(args.fixture.read_text())
    if args.configs:
        paths = sorted(args.yoloair / c for c in args.configs)
    else:
        paths = sorted(p for d in CONFIG_DIRS for p in (args.yoloair / d).rglob("*.yaml"))
    if not paths:
        parser.error(f"no model YAMLs under {args.yoloair}/{{{','.join(CONFIG_DIRS)}}}")
    results = {}
    for path in paths:
        key = path.relative_to(args.yoloair).as_posix()
        results[key] = classify(path, counts.get(key))
        if args.verbose:
            print(f"{results[key][0]:9} {key}: {results[key][1]}", flush=True)
    summarise(results, counts)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def summarise(results: dict[str, tuple[str, str]], counts: dict[str, int]) -> None:
    """Print the outcome counts over the YAMLs YOLOAir builds and over the rest."""
    ours = Counter(outcome for key, (outcome, _) in results.items() if key in counts)
    rest = Counter(outcome for key, (outcome, _) in results.items() if key not in counts)
    total = sum(ours.values())
    print(f"YAMLs YOLOAir builds: {total}: exact {ours['exact']}, different {ours['different']}, "
          f"refused {ours['refused']}, crashed {ours['crashed']}; exact fraction {ours['exact'] / max(total, 1):.1%}")
    print(f"YAMLs YOLOAir does not build: {sum(rest.values())}: built {rest['different']}, "
          f"refused {rest['refused']}, crashed {rest['crashed']}")


if __name__ == "__main__":
    sys.exit(main())
