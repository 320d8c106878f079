"""The measured phases, one module each; each takes a running engine and returns its section of the report."""
