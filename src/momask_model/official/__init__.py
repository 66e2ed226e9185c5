"""The authors' released checkpoints: their ``opt.txt`` read into this project's configs, and their weights
imported into one bundle that reproduces the official outputs bit for bit."""
