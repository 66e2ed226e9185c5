"""Datasets in the HumanML3D layout (caption lines, the datasets, the writer), mocap importers and
procedural test motions."""
from momask_model.data.captions import DatasetError, TextAnnotation, default_tokenizer, parse_text_line, simple_tokens
from momask_model.data.humanml3d import (
    DatasetLayout,
    TextMotionDataset,
    VQWindowDataset,
    collate_text_motion,
    worker_init_fn,
)
from momask_model.data.synthetic import synthetic_walk
from momask_model.data.writer import write_dataset

__all__ = [
    "DatasetError",
    "DatasetLayout",
    "TextAnnotation",
    "TextMotionDataset",
    "VQWindowDataset",
    "collate_text_motion",
    "default_tokenizer",
    "parse_text_line",
    "simple_tokens",
    "synthetic_walk",
    "worker_init_fn",
    "write_dataset",
]
