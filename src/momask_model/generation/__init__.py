"""Generation: the `MoMask` API (text -> joints), long motions and sequences, continuations, editing by
inpainting, prompt and section syntax, results, the one-file checkpoint bundle, and where the model
comes from and runs (`loading`: the demo bundle's path, the device parser)."""
from momask_model.generation.bundle import load_bundle, save_bundle
from momask_model.generation.loading import default_bundle_path, select_device
from momask_model.generation.momask import MoMask
from momask_model.generation.results import GenerationError, GenerationResult

__all__ = ["GenerationError", "GenerationResult", "MoMask", "default_bundle_path", "load_bundle", "save_bundle",
           "select_device"]
