"""Stage 1, tokens in: read the export (text, CSV, JSON Lines), key, de-duplicate and triage."""
