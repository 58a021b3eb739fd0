"""The modules that speak to an SDK directly (aiokafka consumer internals)."""
