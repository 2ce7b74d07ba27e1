"""Fine-tune yolov5n with and without an inserted block from the official weights: does the pretrained
model survive the insertion? Prints the structural and the key-matching transfer counts and both
final mAP50-95 values (with structural transfer the variant should land near the base fine-tune).

    python scripts/bench_transfer.py [--weights ../shared/weights/yolov5n-v6.1.pt] \
        [--data ../shared/data/coco128/coco128.yaml] [--block CBAM] [--after 9] [--epochs 3] [--img 640] \
        [--batch 16] [--workers 2] [--project runs/bench_transfer]

The same as two ``yolo-attn train --weights W --cfg C --data D --epochs 3 --img 640 --batch 16`` runs,
one with ``--cfg yolov5n.yaml`` and one with the YAML ``yolo-attn insert`` writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from yolo_attn.checkpoint import load_checkpoint, transfer_pretrained, transfer_weights
from yolo_attn.engine.trainer import TrainConfig, train
from yolo_attn.nn.builder import build_model
from yolo_attn.nn.yaml_edit import default_block_args, insert_block
from yolo_attn.utils.builtin import builtin_config


def variant_yaml(block: str, after: int, folder: Path) -> Path:
    """yolov5n.yaml with ``block`` inserted after layer ``after``, as ``yolo-attn insert`` writes it."""
    text = builtin_config("yolov5n.yaml", "model").read_text(encoding="utf-8")
    args = default_block_args(yaml.safe_load(text), after, block)
    path = folder / f"yolov5n-{block}-after{after}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(insert_block(text, after, block, args), encoding="utf-8")
    return path


def transfer_counts(weights: str, cfg: Path, nc: int) -> tuple[str, int]:
    """(structural summary line, key-matching count) for ``weights`` into the model of ``cfg``."""
    checkpoint = load_checkpoint(weights)
    source = checkpoint["ema"] or checkpoint["state_dict"]
    report = transfer_pretrained(build_model(cfg, nc=nc), source, checkpoint["model_yaml"], ("anchor",))
    return report.summary(), transfer_weights(build_model(cfg, nc=nc), source, ("anchor",))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default="../shared/weights/yolov5n-v6.1.pt")
    p.add_argument("--data", default="../shared/data/coco128/coco128.yaml")
    p.add_argument("--block", default="CBAM")
    p.add_argument("--after", type=int, default=9)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--img", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--project", default="runs/bench_transfer")
    args = p.parse_args()
    cfg = variant_yaml(args.block, args.after, Path(args.project))
    structural, key_matched = transfer_counts(args.weights, cfg, nc=80)
    print(f"{cfg.name}: structural {structural}; key matching would transfer {key_matched}")
    scores = {}
    for name, model_cfg in (("base", "yolov5n.yaml"), (cfg.stem, str(cfg))):
        summary = train(TrainConfig(
            cfg=model_cfg, weights=args.weights, data=args.data, epochs=args.epochs, img=args.img, batch=args.batch,
            workers=args.workers, project=args.project, name=name, exist_ok=True, noplots=True,
        ))
        scores[name] = summary["map50_95"]
    for name, score in scores.items():
        print(f"{name}: mAP50-95 {score:.4f} after {args.epochs} epochs at {args.img}")


if __name__ == "__main__":
    main()
