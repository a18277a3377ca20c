"""Stage 4, lines out: build each result line, write it, and read earlier lines to resume."""
