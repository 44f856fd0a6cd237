"""Scanner state per chain lives here (cursor, recent block hashes)."""
