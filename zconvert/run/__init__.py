"""Running a conversion: config, the task list, executors, the worker that joins zipread to a sink,
resume, verify, the output folder and its manifest. May import core, zipread, sinks and stores."""
