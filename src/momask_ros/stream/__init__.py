"""The robot stream, without ROS: commands and their parsing, generation + retargeting into a clip, the
playbacks the control loop samples, where continuations join, and the producer that runs it all.
Clock-injected and thread-safe so the ROS node stays a thin adapter."""
