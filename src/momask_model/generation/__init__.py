"""Generation: the `MoMask` API (text -> joints), long motions and sequences, continuations, editing by
inpainting, prompt and section syntax, results, and the one-file checkpoint bundle."""
from momask_model.generation.bundle import load_bundle, save_bundle
from momask_model.generation.momask import MoMask
from momask_model.generation.results import GenerationError, GenerationResult

__all__ = ["GenerationError", "GenerationResult", "MoMask", "load_bundle", "save_bundle"]
