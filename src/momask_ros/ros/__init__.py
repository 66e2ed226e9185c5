"""ROS 2: the nodes (momask_node, momask_sim), message conversions, bag recording and the demo. The only
room of the package that imports rclpy or ROS message packages (a test enforces it)."""
