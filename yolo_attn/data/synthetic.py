"""The built-in demo dataset: solid shapes of a few classes on textured backgrounds, with exact labels.

Written once into ``demo`` in the cache root (:func:`~yolo_attn.utils.paths.cache_root`) in the YOLO layout
(``images/{train,val}``, ``labels/{train,val}``) with a dataset YAML, so ``yolo-attn train`` runs with
no data of the user's own.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

from yolo_attn.utils.paths import cache_root

DEMO_NAMES = ["rectangle", "ellipse", "triangle"]
# BGR colours far apart in hue so that colour alone separates the classes.
DEMO_COLORS = [(40, 40, 220), (40, 200, 40), (220, 90, 30)]
DEMO_YAML_NAME = "demo.yaml"


def textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-contrast grey clutter: blurred noise, a gradient and a few thin random lines."""
    noise = rng.integers(0, 256, (size // 8 + 1, size // 8 + 1, 3), dtype=np.uint8)
    base = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32) * 0.35
    gradient = np.linspace(0, 60, size, dtype=np.float32)[None, :, None]
    image = np.clip(base + gradient + 60, 0, 255).astype(np.uint8)
    for _ in range(6):
        p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        grey = int(rng.integers(60, 200))
        cv2.line(image, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), (grey, grey, grey), 1)
    return image


def draw_shape(image: np.ndarray, cls: int, box: tuple[int, int, int, int],
               rng: np.random.Generator) -> tuple[int, ...]:
    """Draw shape ``cls`` filling ``box`` (x1, y1, x2, y2, inclusive); returns the exact painted extent."""
    x1, y1, x2, y2 = box
    colour = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in DEMO_COLORS[cls])
    if cls == 0:
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness=-1)
        return x1, y1, x2, y2
    if cls == 1:
        centre, axes = ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2)
        cv2.ellipse(image, centre, axes, 0, 0, 360, colour, thickness=-1)
        return centre[0] - axes[0], centre[1] - axes[1], centre[0] + axes[0], centre[1] + axes[1]
    apex_x = int(rng.integers(x1, x2 + 1))
    points = np.array([[apex_x, y1], [x1, y2], [x2, y2]], dtype=np.int32)
    cv2.fillPoly(image, [points], colour)
    return x1, y1, x2, y2


def synthetic_image(rng: np.random.Generator, size: int, max_objects: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """One image and its labels (n, 5) = (class, cx, cy, w, h) normalised; shapes do not overlap."""
    image = textured_background(rng, size)
    taken = np.zeros((size, size), dtype=bool)
    labels = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(10):
            w, h = (int(v) for v in rng.integers(size // 10, size // 3, 2))
            x1, y1 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            if not taken[y1 : y1 + h + 1, x1 : x1 + w + 1].any():
                break
        else:
            continue
        cls = int(rng.integers(len(DEMO_NAMES)))
        ex1, ey1, ex2, ey2 = draw_shape(image, cls, (x1, y1, x1 + w, y1 + h), rng)
        taken[y1 : y1 + h + 1, x1 : x1 + w + 1] = True
        # Pixel extents are inclusive: a shape painted over columns ex1..ex2 is (ex2 - ex1 + 1) wide.
        bw, bh = ex2 - ex1 + 1, ey2 - ey1 + 1
        labels.append((cls, (ex1 + bw / 2) / size, (ey1 + bh / 2) / size, bw / size, bh / size))
    return image, np.array(labels, dtype=np.float64).reshape(-1, 5)


def generate_demo_dataset(
    root: str | Path | None = None, n_train: int = 320, n_val: int = 80, img_size: int = 320, seed: int = 0
) -> Path:
    """Write the demo set under ``root`` (default ``cache_root()/demo``) unless complete; returns its YAML path."""
    root = Path(root) if root is not None else cache_root() / "demo"
    yaml_path = root / DEMO_YAML_NAME
    if yaml_path.is_file():
        return yaml_path
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, labels = synthetic_image(rng, img_size)
            stem = f"{split}_{i:05d}"
            cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            lines = [f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, x, y, w, h in labels]
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    config = {"path": str(root), "train": "images/train", "val": "images/val",
              "nc": len(DEMO_NAMES), "names": DEMO_NAMES}
    temporary = yaml_path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(config, sort_keys=False))
    temporary.replace(yaml_path)  # written last: its presence marks a complete set
    return yaml_path
