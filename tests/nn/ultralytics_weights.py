"""Deterministic weights for the Ultralytics parity fixtures (``tests/fixtures/ultralytics/README.md``).

Both sides fill a state dict of the same keys and shapes from one seeded generator, key by key in sorted
order, so a fixture needs to store only the keys, shapes and the reference outputs, not ~10 MB of weights.
"""

from __future__ import annotations

import torch

FIXTURE_SEED = 0
INPUT_SEED = 1
INPUT_SHAPE = (1, 3, 128, 128)


def seeded_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = FIXTURE_SEED) -> dict[str, torch.Tensor]:
    """Values for ``shapes`` (key -> shape), drawn in sorted key order from ``torch.Generator().manual_seed(seed)``.

    Convolution weights ~ N(0, 1 / fan_in); BatchNorm weight and running variance ~ U(0.5, 1.5); biases and
    running means ~ N(0, 0.1); the DFL projection keeps 0..reg_max-1 and ``num_batches_tracked`` is 0, so
    features stay of order one through the depth of the network.
    """
    generator = torch.Generator().manual_seed(seed)
    values = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        if key.endswith("num_batches_tracked"):
            values[key] = torch.zeros(shape, dtype=torch.long)
        elif key.endswith("dfl.conv.weight"):
            values[key] = torch.arange(shape[1], dtype=torch.float).view(shape)
        elif len(shape) > 1:
            fan_in = torch.Size(shape[1:]).numel()
            values[key] = torch.randn(shape, generator=generator) / fan_in**0.5
        elif key.endswith(("running_var", "bn.weight")):
            values[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            values[key] = torch.randn(shape, generator=generator) * 0.1
    return values


def seeded_input() -> torch.Tensor:
    """The fixture image batch: ``INPUT_SHAPE`` uniform in [0, 1) from seed ``INPUT_SEED``."""
    return torch.rand(INPUT_SHAPE, generator=torch.Generator().manual_seed(INPUT_SEED))
