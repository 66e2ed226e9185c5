"""The robot stream, without ROS: commands and their parsing, generation + retargeting into a clip, the
playbacks the control loop samples, where continuations join, the producer's workers, and the
conductor, the control loop that owns time. Clock-injected, so the ROS node stays a thin adapter and
tests drive it all on a fake clock."""
