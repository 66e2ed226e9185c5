"""momask_ros: MoMask text-to-motion retargeted onto humanoid robots and streamed over ROS 2."""
import os as _os

if _os.environ.get("MUJOCO_GL") == "osmesa":
    # Mesa's OSMesa (llvmpipe) and Triton (pulled in lazily by torch._dynamo, e.g. by optimizers) both
    # carry LLVM; loading Triton after MuJoCo has loaded OSMesa segfaults the process. Loading Triton
    # first is safe, so do it before any submodule imports mujoco.
    try:
        import triton  # noqa: F401
    except ImportError:  # CPU-only installs without Triton have nothing to clash with
        pass
