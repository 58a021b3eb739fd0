"""ragstream-ingestor: documents in, structure-aware, word-bounded chunks out."""
