"""tape's kernel: event schema, exact units, the event log, ids, settings plumbing and the CLI."""
