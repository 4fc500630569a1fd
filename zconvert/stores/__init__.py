"""A run's output as readers and reruns find it: stores and OUT/manifest.json, read the same
way by path or by URL, below both `run` (resume, verify, all.h5) and `read` (open, refs,
open_all, inspect). May import core and sinks."""
