"""The only modules that import an SDK: Weaviate's client and the embedding model."""
