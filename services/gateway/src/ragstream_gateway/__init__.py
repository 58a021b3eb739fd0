"""ragstream gateway: the public REST API over the Kafka pipeline."""
