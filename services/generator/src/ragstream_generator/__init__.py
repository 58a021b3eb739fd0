"""ragstream-generator: cited answers to retrieved contexts, through a LiteLLM Router."""
