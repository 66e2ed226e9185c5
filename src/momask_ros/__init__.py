"""momask_ros: MoMask text-to-motion retargeted onto humanoid robots and streamed over ROS 2.

Rooms, lowest first (arrows only point down this list): ``robot`` (descriptions + YAML profiles) <-
``retarget`` (human joints -> robot joint trajectories) <- ``physics`` (MuJoCo simulator, physical
checks, previews) <- ``stream`` (commands, generation + retargeting into clips, playback, switching;
pure and clock-injected) <- ``tools`` (CLIs) and ``ros`` (the only room that imports rclpy or messages).
"""

from momask_model.triton_loading import load_triton_isolated as _load_triton_isolated
from momask_model.triton_loading import mesa_renderer_selected as _mesa_renderer_selected

if _mesa_renderer_selected():
    _load_triton_isolated()  # before or after MuJoCo loaded Mesa: see momask_model.triton_loading
