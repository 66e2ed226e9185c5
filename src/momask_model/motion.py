"""Moved: skeletons, the feature layout, features <-> joints, normalisation and mirroring each have
their own module now (``skeleton``, ``feature_layout``, ``features``, ``normalization``, ``mirroring``).

Only ``skeleton_for`` stays importable from here, for ``momask_ros.node`` while #14 edits that file;
once it imports ``momask_model.skeleton``, delete this module.
"""
from .skeleton import skeleton_for

__all__ = ["skeleton_for"]
