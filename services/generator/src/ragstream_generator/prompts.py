"""Prompt templates, versioned as files in ``ragstream_generator/prompts/<version>.yaml``.

A template holds the wording (system prompt, the header above the passages, the closing line);
the structure (question and passage tags) is code in ``domain.py`` because the local model parses
it back. Each answer records the template's version.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import yaml

__all__ = ["DEFAULT_PROMPT_VERSION", "PromptTemplate", "load_prompt"]

DEFAULT_PROMPT_VERSION = "answer-v1"
# Kept here rather than in domain.py so the template can name it without an import cycle.
NOT_FOUND_SENTENCE = "I could not find the answer in the provided documents."


@dataclass(frozen=True)
class PromptTemplate:
    """The wording of one prompt version.

    Args:
        version: The template's name, recorded on every answer (``answer-v1``).
        system: The system message.
        data_header: The line above the fenced passages.
        footer: The closing line of the user message.
    """

    version: str
    system: str
    data_header: str
    footer: str


@cache
def load_prompt(version: str = DEFAULT_PROMPT_VERSION) -> PromptTemplate:
    """Read the packaged template ``version`` (cached: the file is read once per process).

    Args:
        version: The file's stem under ``prompts/``.

    Raises:
        FileNotFoundError: No template of that version is packaged.
        ValueError: The file lacks a field or names another version.
    """
    resource = files("ragstream_generator").joinpath("prompts", f"{version}.yaml")
    if not resource.is_file():
        raise FileNotFoundError(f"no prompt template {version!r}")
    raw = yaml.safe_load(resource.read_text(encoding="utf-8"))
    fields = ("version", "system", "data_header", "footer")
    if not isinstance(raw, dict) or any(not isinstance(raw.get(f), str) for f in fields):
        raise ValueError(f"prompt template {version!r} needs string fields {list(fields)}")
    if raw["version"] != version:
        raise ValueError(f"prompt file {version!r} declares version {raw['version']!r}")
    return PromptTemplate(
        version=raw["version"],
        system=raw["system"].replace("{not_found}", NOT_FOUND_SENTENCE).strip(),
        data_header=raw["data_header"].strip(),
        footer=raw["footer"].strip(),
    )
