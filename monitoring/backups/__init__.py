"""Encrypted backups of the database and the key vault, their manifests, verification and restore."""
