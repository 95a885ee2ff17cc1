"""Training progress from any framework's log and tracker files: step, total, rate, loss, ETA, per rank."""
