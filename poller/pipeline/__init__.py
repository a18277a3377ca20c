"""Stage 2, the work: a bounded queue drained by workers, each attempt paced and retried."""
