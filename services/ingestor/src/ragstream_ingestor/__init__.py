"""ragstream-ingestor: documents in, structure-aware chunks bounded in the model's word pieces out."""
