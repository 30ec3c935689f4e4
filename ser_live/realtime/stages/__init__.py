"""The device-free stages of the engine, each ``process``/``flush``/``reset``: resample, speech gate, windows,
features (shared with training), input normalisation, smoothing, arousal/valence; ``pipeline`` chains the first
five as training and the live engine cut audio."""
