"""Motion-capture importers: DeepMimic JSON and BVH -> 22 HumanML3D joints -> dataset layout.

Each importer reduces a file to key-framed local poses (``kinematics.PoseSequence``), does time
operations on rotations (looping, speed, resampling to 20 fps), runs forward kinematics, turns the
world into HumanML3D's axes and maps the source skeleton onto the 22 SMPL-order joints with a YAML
skeleton map (``skeleton_map``). ``demo_dataset`` builds the demo model's training set from the skills
of ``demo_skills``.
"""
from momask_model.data.mocap.bvh import BvhClip, bvh_to_joints, find_skeleton_map, guess_unit_m, load_bvh, parse_bvh
from momask_model.data.mocap.deepmimic import (
    DEEPMIMIC_TO_HUMANML3D,
    DeepMimicCharacter,
    DeepMimicClip,
    deepmimic_to_joints,
    load_deepmimic_character,
    load_deepmimic_clip,
)
from momask_model.data.mocap.errors import MocapFormatError, SkeletonMapError
from momask_model.data.mocap.kinematics import PoseSequence, SourceSkeleton, forward_kinematics, loop_cycles, resample
from momask_model.data.mocap.skeleton_map import (
    DerivedJoint,
    SkeletonMap,
    available_skeleton_maps,
    load_skeleton_map,
    poses_to_humanml3d_joints,
)

__all__ = [
    "DEEPMIMIC_TO_HUMANML3D",
    "BvhClip",
    "DeepMimicCharacter",
    "DeepMimicClip",
    "DerivedJoint",
    "MocapFormatError",
    "PoseSequence",
    "SkeletonMap",
    "SkeletonMapError",
    "SourceSkeleton",
    "available_skeleton_maps",
    "bvh_to_joints",
    "deepmimic_to_joints",
    "find_skeleton_map",
    "forward_kinematics",
    "guess_unit_m",
    "load_bvh",
    "load_deepmimic_character",
    "load_deepmimic_clip",
    "load_skeleton_map",
    "loop_cycles",
    "parse_bvh",
    "poses_to_humanml3d_joints",
    "resample",
]
