"""Training data: manifests and their checks, subtitles and windows, importers, real-speech sets."""
