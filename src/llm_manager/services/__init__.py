"""Use cases: the only layer that combines providers and the database."""
