"""Command-line tools that need no ROS: momask-check (can the robot do this motion?) and momask-robot-check
(does a new robot profile make sense?)."""
