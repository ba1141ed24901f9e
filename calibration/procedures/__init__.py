"""One module per calibration measurement; each `run(ctx)` scans, fits, checks and returns a record draft."""
