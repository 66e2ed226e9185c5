"""Human motion as data: the HumanML3D/KIT skeletons, the 263-d feature vector and its inverse,
normalisation, mirroring, quaternions, ground alignment, BVH export and stick-figure previews.

Everything here is numpy/torch on arrays; nothing knows about text, tokens or robots.
"""
from momask_model.motion.features import features_to_joints, joints_to_features
from momask_model.motion.normalization import Normalizer
from momask_model.motion.skeleton import JOINT_NAMES

__all__ = ["JOINT_NAMES", "Normalizer", "features_to_joints", "joints_to_features"]
