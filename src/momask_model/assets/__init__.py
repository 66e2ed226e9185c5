"""Files shipped with the package: the demo bundle and its skill recognizer."""
