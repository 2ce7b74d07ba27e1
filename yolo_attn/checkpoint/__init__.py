"""Checkpoints: the restricted unpickler (``unpickler``), our versioned schema (``schema``), import of
official YOLOv5 / YOLOv7 files (``upstream``), loading (``loading``) and weight transfer (``transfer``)."""

from yolo_attn.checkpoint.loading import (
    DamagedCheckpointError,
    LoadedModel,
    load_checkpoint,
    load_for_resume,
    load_model,
    resume_candidates,
)
from yolo_attn.checkpoint.schema import (
    SCHEMA_VERSION,
    CheckpointWriteError,
    apply_batchnorm_settings,
    batchnorm_settings,
    make_checkpoint,
    new_checkpoint,
    previous_checkpoint,
    save_checkpoint,
    strip_optimizer,
)
from yolo_attn.checkpoint.transfer import TransferReport, transfer_pretrained, transfer_weights
from yolo_attn.checkpoint.unpickler import RestrictedUnpickler, UnsafeCheckpointError, UpstreamRecord

__all__ = [
    "SCHEMA_VERSION", "CheckpointWriteError", "DamagedCheckpointError", "LoadedModel", "TransferReport",
    "RestrictedUnpickler", "UnsafeCheckpointError", "UpstreamRecord", "apply_batchnorm_settings", "batchnorm_settings",
    "load_checkpoint", "load_for_resume", "load_model", "make_checkpoint", "new_checkpoint", "previous_checkpoint",
    "resume_candidates", "save_checkpoint", "strip_optimizer", "transfer_pretrained", "transfer_weights",
]
