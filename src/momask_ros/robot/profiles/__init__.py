"""Robot descriptions and YAML profiles shipped with the package (package data)."""
