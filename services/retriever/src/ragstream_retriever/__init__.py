"""ragstream-retriever: the only writer and reader of Weaviate (index role and search role)."""
