"""Tests for keeping freed memory in the process, each in a fresh interpreter.

malloc's thresholds are the whole process's, so every check runs in a subprocess of its own.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's"
)

PAGE_FAULTS = textwrap.dedent(
    """
    import ctypes, json, resource, threading

    {setup}

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    sizes = [16 << 20, 12 << 20, 8 << 20]
    faults = []

    def passes():
        # What a forward pass does to memory, on a worker thread (an arena of its own): take
        # activations, write them, free them all; six times.
        for _ in range(6):
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            blocks = [libc.malloc(size) for size in sizes]
            for block, size in zip(blocks, sizes):
                libc.memset(block, 1, size)
            for block in blocks:
                libc.free(block)
            faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

    worker = threading.Thread(target=passes)
    worker.start()
    worker.join()
    print(json.dumps(faults))
    """
)
PAGES_A_PASS = (36 << 20) // 4096


def page_faults(setup: str) -> list[int]:
    """Each simulated pass's page faults, in a new interpreter after ``setup``."""
    script = PAGE_FAULTS.format(setup=setup)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    faults: list[int] = json.loads(done.stdout.strip().splitlines()[-1])
    return faults


def test_passes_after_the_first_reuse_the_memory() -> None:
    """With the thresholds set, only the first pass faults its pages in."""
    faults = page_faults(
        "from ragstream_embedding.memory import keep_freed_memory\nassert keep_freed_memory()"
    )
    assert faults[0] >= PAGES_A_PASS // 2
    assert max(faults[1:]) < PAGES_A_PASS // 20


def test_without_them_every_pass_faults_its_pages_in_again() -> None:
    """The default this exists for: glibc hands the memory back after each pass."""
    faults = page_faults("")
    assert min(faults[1:]) >= PAGES_A_PASS // 2


def test_loading_the_model_sets_them() -> None:
    """The embedder, the retriever and the benchmark get them by loading the model."""
    faults = page_faults(
        "from ragstream_embedding import load_default_model\nload_default_model(threads=1)"
    )
    assert max(faults[1:]) < PAGES_A_PASS // 20
