"""The program each torchrun launcher of the two-node test runs: ``yolo-attn`` with this rank's arguments, then the
digest of the rank's trained parameters and the plugin blocks of its model in ``$RANK_REPORTS/rank<RANK>.json``."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from yolo_attn.cli import main
from yolo_attn.engine.trainer import Trainer

train_and_report = Trainer.run


def run_and_report(self: Trainer) -> dict[str, Any] | None:
    summary = train_and_report(self)
    digest = hashlib.sha256()
    for name, parameter in self.model.named_parameters():  # buffers (BatchNorm statistics) stay per rank in DDP
        digest.update(name.encode())
        digest.update(parameter.detach().cpu().numpy().tobytes())
    plugin_blocks = sorted({type(m).__name__ for m in self.model.modules()
                            if type(m).__module__.startswith("yolo_attn_plugin_")})
    report = {"weights": digest.hexdigest(), "plugin_blocks": plugin_blocks, "last_step": self.state.last_opt_step}
    Path(os.environ["RANK_REPORTS"], f"rank{os.environ['RANK']}.json").write_text(json.dumps(report))
    return summary


if __name__ == "__main__":
    Trainer.run = run_and_report  # type: ignore[method-assign]
    sys.exit(main(sys.argv[1:]))
