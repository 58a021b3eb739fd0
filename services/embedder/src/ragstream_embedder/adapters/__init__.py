"""The embedder's adapters: the only modules that import the model's SDK."""
