"""Beside the pipeline: logs, the progress line and the metrics file."""
