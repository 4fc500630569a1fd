"""Reading what a run wrote: open by path, memory maps, StoreRef, open_all, inspect and verify.
May import core, zipread, sinks and run."""
