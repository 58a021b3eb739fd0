"""ragstream-common: the contracts between ragstream's services, and nothing else."""
