"""Inference: the Transcriber, its backends, long-form coverage, writers, batch jobs, evaluation, streaming."""
