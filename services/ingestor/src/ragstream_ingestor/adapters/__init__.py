"""The ingestor's adapters: the only modules that touch the embedding model's files."""
