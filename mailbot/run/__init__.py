"""Running: one pass (record, decide, queue, deliver, file) and the long-running service."""
