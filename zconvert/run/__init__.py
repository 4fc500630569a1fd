"""Running a conversion: config, plan, tasks, executors, the worker that joins zipread to a sink,
resume, the output folder and its manifest. May import core, zipread and sinks."""
