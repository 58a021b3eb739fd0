"""The only modules that import an SDK: LiteLLM and the local model registered with it."""
