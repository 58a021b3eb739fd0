"""ragstream-fakellm: an OpenAI-compatible chat server that can be told to fail, stall or answer badly."""

from ragstream_fakellm.app import UNGROUNDED_ANSWER, Behaviour, create_app
from ragstream_fakellm.running import RunningServer, run_in_thread

__all__ = ["UNGROUNDED_ANSWER", "Behaviour", "RunningServer", "create_app", "run_in_thread"]
