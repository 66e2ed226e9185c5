"""Command-line tools (momask-generate, momask-import-official, momask-bench): argument plumbing over the
``generation`` API, and the requests (lengths, sequences, edits) they make of it."""
