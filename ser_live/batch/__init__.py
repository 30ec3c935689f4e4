"""ser-batch: score archives of recordings through the live engine, on one machine or a Ray cluster."""
