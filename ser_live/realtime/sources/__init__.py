"""Where audio comes from: files (``audio``, soundfile) and the microphone (``capture``, the only module that
imports sounddevice)."""
