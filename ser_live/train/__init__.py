"""Training: corpora, augmentation, Keras CNNs, speaker-independent evaluation (needs the [train] extra)."""
