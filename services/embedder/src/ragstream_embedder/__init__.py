"""ragstream-embedder: micro-batched chunk embedding."""
