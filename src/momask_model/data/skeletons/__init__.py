"""YAML skeleton maps for the mocap importers (package data)."""
