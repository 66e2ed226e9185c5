"""Physics: the MuJoCo simulator of a robot, the physical checks of a motion (torque, balance, contact),
and MuJoCo previews of a trajectory. No ROS."""
