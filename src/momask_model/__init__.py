"""momask_model: MoMask (Guo et al., CVPR 2024) text-to-motion in pure PyTorch; never imports ROS.

Rooms, lowest first (arrows only point down this list):
``motion`` (skeleton, features, quaternions, BVH) <- ``text`` (sentence encoders, scope gate) <- ``nets``
(RVQ-VAE, masked / residual transformers, length estimator) <- ``generation`` (the `MoMask` API, long motions,
editing, bundles) <- ``official`` (authors' checkpoints) <- ``cli``; ``data`` / ``evaluate`` / ``train`` beside.

The two names most callers need are exported here; they load lazily, so importing a small room
(``momask_model.motion.skeleton``) does not pull in the whole model.
"""
from importlib import import_module as _import_module

from momask_model.triton_loading import load_triton_isolated as _load_triton_isolated
from momask_model.triton_loading import mesa_renderer_selected as _mesa_renderer_selected

if _mesa_renderer_selected():
    _load_triton_isolated()  # Triton and Mesa both carry LLVM: see momask_model.triton_loading

_EXPORTS = {
    "MoMask": "momask_model.generation.momask",
    "GenerationResult": "momask_model.generation.results",
    "GenerationError": "momask_model.generation.results",
    "load_bundle": "momask_model.generation.bundle",
    "save_bundle": "momask_model.generation.bundle",
    "default_bundle_path": "momask_model.generation.loading",
    "select_device": "momask_model.generation.loading",
    "SamplingConfig": "momask_model.config",
    "MoMaskConfig": "momask_model.config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(_import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
