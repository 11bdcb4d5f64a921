"""What people use: the CLI, review actions, the log view, doctor, imports, demo, init."""
