"""Reading what a run wrote, by local path or URL: open, memory maps, StoreRef, refs, open_all
and inspect. May import core, zipread, sinks and stores."""
