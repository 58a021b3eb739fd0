"""The embedder's entry point sets OpenMP's wait policy before anything can load torch."""

from __future__ import annotations

import os
import subprocess
import sys

_PROBE = (
    "import os, sys\n"
    "import ragstream_embedder.__main__\n"
    "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
)


def _run_probe(**env: str) -> list[str]:
    clean = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.split()


def test_entry_point_makes_openmp_threads_wait_passively_before_torch_loads() -> None:
    policy, torch_loaded = _run_probe()

    assert policy == "PASSIVE"
    # OpenMP reads the policy once, when torch loads it: set after that, it would do nothing.
    assert torch_loaded == "False"


def test_an_explicit_wait_policy_wins() -> None:
    policy, _ = _run_probe(OMP_WAIT_POLICY="ACTIVE")

    assert policy == "ACTIVE"
