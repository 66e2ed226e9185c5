"""Datasets in the HumanML3D layout, writers for it, and procedural test motions."""
from momask_model.data.humanml3d import (
    DatasetError,
    DatasetLayout,
    TextAnnotation,
    TextMotionDataset,
    VQWindowDataset,
    collate_text_motion,
    default_tokenizer,
    parse_text_line,
    simple_tokens,
    worker_init_fn,
    write_dataset,
)
from momask_model.data.synthetic import synthetic_walk

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
