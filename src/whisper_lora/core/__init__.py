"""Shared vocabulary with no heavy dependencies: errors, languages, files, options and records, model names."""
