"""Tests for finding and reading what ``ragstream ingest`` publishes: paths, globs, types, lines."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ragstream_cli.ingest.sources import (
    CONTENT_TYPES,
    Plan,
    PreparedDocument,
    Problem,
    Source,
    UsageError,
    discover,
    file_document,
    load_documents,
    next_documents,
    parse_line,
    valid_tenant,
)
from ragstream_common.topics import MAX_MESSAGE_BYTES


def _write(path: Path, content: str | bytes = "# Title\n\nBody text.\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _ids(plan: Plan) -> list[str]:
    return [source.relative_id for source in plan.sources]


def _line(**fields: object) -> str:
    return json.dumps(fields)


class TestDiscover:
    def test_folder_is_walked_recursively_with_ids_relative_to_it(self, tmp_path: Path) -> None:
        """Every supported file under a folder is found, its id relative to that folder."""
        _write(tmp_path / "docs" / "a.md")
        _write(tmp_path / "docs" / "guides" / "setup.txt")
        plan = discover([str(tmp_path / "docs")])
        assert _ids(plan) == ["a.md", "guides/setup.txt"]

    def test_hidden_files_and_folders_are_skipped(self, tmp_path: Path) -> None:
        """Dot files and everything under dot folders are left out of a folder walk."""
        _write(tmp_path / "docs" / "kept.md")
        _write(tmp_path / "docs" / ".draft.md")
        _write(tmp_path / "docs" / ".git" / "notes.md")
        plan = discover([str(tmp_path / "docs")])
        assert _ids(plan) == ["kept.md"]
        assert plan.skipped == []

    def test_a_file_is_named_by_its_file_name(self, tmp_path: Path) -> None:
        """A file given directly has its own name as doc id and its path as given."""
        path = _write(tmp_path / "deep" / "report.md")
        plan = discover([str(path)])
        assert _ids(plan) == ["report.md"]
        assert plan.sources[0].path == path

    def test_globs_are_expanded_with_ids_below_their_fixed_part(self, tmp_path: Path) -> None:
        """A quoted recursive glob finds files, with ids relative to the folder before '*'."""
        _write(tmp_path / "docs" / "a.md")
        _write(tmp_path / "docs" / "sub" / "b.md")
        _write(tmp_path / "docs" / "sub" / "c.txt")
        plan = discover([f"{tmp_path}/docs/**/*.md"])
        assert _ids(plan) == ["a.md", "sub/b.md"]

    def test_folders_matched_by_a_glob_are_walked(self, tmp_path: Path) -> None:
        """A glob that matches folders ingests what is inside them."""
        _write(tmp_path / "teams" / "red" / "plan.md")
        _write(tmp_path / "teams" / "blue" / "plan.md")
        plan = discover([f"{tmp_path}/teams/*"])
        assert _ids(plan) == ["blue/plan.md", "red/plan.md"]

    def test_glob_matching_nothing_is_a_usage_error(self, tmp_path: Path) -> None:
        """A pattern without matches is reported rather than silently ingesting nothing."""
        with pytest.raises(UsageError, match="no file matches"):
            discover([f"{tmp_path}/*.md"])

    def test_missing_path_is_a_usage_error(self, tmp_path: Path) -> None:
        """A path that does not exist stops the command before anything is published."""
        with pytest.raises(UsageError, match="no such file or folder"):
            discover([str(tmp_path / "nope.md")])

    def test_unsupported_files_are_listed_not_fatal(self, tmp_path: Path) -> None:
        """Files of unknown types are skipped with a reason, beside the supported ones."""
        _write(tmp_path / "a.md")
        _write(tmp_path / "photo.png", b"\x89PNG")
        _write(tmp_path / "Makefile", "all:")
        plan = discover([str(tmp_path)])
        assert _ids(plan) == ["a.md"]
        assert plan.skipped == [
            Problem(str(tmp_path / "Makefile"), "unsupported type (no extension)", skipped=True),
            Problem(str(tmp_path / "photo.png"), "unsupported type .png", skipped=True),
        ]

    def test_the_same_file_reached_twice_is_one_source(self, tmp_path: Path) -> None:
        """A file named both by its folder and by a glob is ingested once."""
        _write(tmp_path / "a.md")
        plan = discover([str(tmp_path), f"{tmp_path}/*.md"])
        assert len(plan.sources) == 1

    @pytest.mark.parametrize("name", ["data.jsonl", "data.NDJSON"])
    def test_json_lines_files_are_bulk_sources(self, tmp_path: Path, name: str) -> None:
        """.jsonl and .ndjson files, in any case, hold one document a line."""
        _write(tmp_path / name, _line(content="x") + "\n")
        (source,) = discover([str(tmp_path)]).sources
        assert source.bulk is True

    def test_suffixes_are_matched_case_insensitively(self, tmp_path: Path) -> None:
        """README.MD is Markdown like readme.md."""
        _write(tmp_path / "README.MD")
        assert _ids(discover([str(tmp_path)])) == ["README.MD"]


class TestPlan:
    def test_counts_one_document_per_file_and_per_non_blank_line(self, tmp_path: Path) -> None:
        """The total for the progress bar counts files plus the non-blank lines of bulk files."""
        _write(tmp_path / "a.md")
        _write(tmp_path / "b.jsonl", "\n".join([_line(content="1"), "", _line(content="2"), ""]))
        assert discover([str(tmp_path)]).document_count() == 3


class TestFileDocument:
    def test_text_file_becomes_an_upsert_with_its_path_metadata(self, tmp_path: Path) -> None:
        """A Markdown file is sent as text with its id, stem title, filename and path source."""
        path = _write(tmp_path / "docs" / "guides" / "set-up.md", "# Set up\n\nSteps.\n")
        event = file_document(Source(path, tmp_path / "docs"), tenant="acme")
        assert event is not None
        assert (event.doc_id, event.tenant, event.title) == ("guides/set-up.md", "acme", "set-up")
        assert (event.content, event.content_base64) == ("# Set up\n\nSteps.\n", None)
        assert (event.content_type, event.filename, event.source) == (
            "text/markdown",
            "set-up.md",
            str(path),
        )

    @pytest.mark.parametrize(("suffix", "content_type"), sorted(CONTENT_TYPES.items()))
    def test_content_type_follows_the_extension(
        self, tmp_path: Path, suffix: str, content_type: str
    ) -> None:
        """Each supported extension maps to the content type the ingestor parses."""
        path = _write(tmp_path / f"doc{suffix}", "some text")
        event = file_document(Source(path, tmp_path), tenant="default")
        assert event is not None
        assert event.content_type == content_type

    def test_non_utf8_text_goes_as_bytes(self, tmp_path: Path) -> None:
        """Text in another encoding is sent as base64 of the exact bytes, for the ingestor."""
        raw = "Café à Zürich".encode("latin-1")
        event = file_document(Source(_write(tmp_path / "x.txt", raw), tmp_path), "default")
        assert event is not None
        assert event.content == ""
        assert base64.b64decode(event.content_base64 or "") == raw

    def test_pdf_goes_as_bytes_even_when_it_decodes(self, tmp_path: Path) -> None:
        """A PDF is bytes whatever its encoding, so it is always base64."""
        raw = b"%PDF-1.4 plain ascii body"
        event = file_document(Source(_write(tmp_path / "r.pdf", raw), tmp_path), "default")
        assert event is not None
        assert (event.content, event.content_type) == ("", "application/pdf")
        assert base64.b64decode(event.content_base64 or "") == raw

    def test_utf8_byte_order_mark_is_dropped(self, tmp_path: Path) -> None:
        """A BOM is an encoding artefact, not the first character of the document."""
        path = _write(tmp_path / "bom.txt", "\ufeffhello".encode())
        event = file_document(Source(path, tmp_path), "default")
        assert event is not None
        assert event.content == "hello"

    @pytest.mark.parametrize(("name", "content"), [("blank.md", " \n\t\n"), ("empty.pdf", b"")])
    def test_empty_files_are_none(self, tmp_path: Path, name: str, content: str | bytes) -> None:
        """A file with nothing but whitespace (or no bytes) is no document."""
        assert file_document(Source(_write(tmp_path / name, content), tmp_path), "default") is None

    def test_too_large_for_one_message_is_refused(self, tmp_path: Path) -> None:
        """A file larger than Kafka's message limit is refused with its size."""
        path = _write(tmp_path / "huge.txt", "x" * MAX_MESSAGE_BYTES)
        with pytest.raises(
            ValueError, match=f"too large for one Kafka message \\({MAX_MESSAGE_BYTES} bytes\\)"
        ):
            file_document(Source(path, tmp_path), "default")

    def test_too_large_once_encoded_is_refused(self, tmp_path: Path) -> None:
        """A file under the limit whose base64 is over it is refused with its encoded size."""
        path = _write(tmp_path / "big.pdf", b"\xff" * (MAX_MESSAGE_BYTES * 4 // 5))
        with pytest.raises(ValueError, match="bytes encoded"):
            file_document(Source(path, tmp_path), "default")


class TestParseLine:
    def test_fields_are_taken_from_the_line(self) -> None:
        """A line with DocumentUpserted's fields becomes that upsert."""
        event = parse_line(
            _line(
                doc_id="faq-1",
                title="FAQ",
                content="Q and A",
                content_type="text/markdown",
                tags=["faq"],
                source="wiki",
                tenant="acme",
            ),
            default_id="ignored",
            default_source="ignored",
            tenant="default",
        )
        assert (event.doc_id, event.title, event.content, event.content_type) == (
            "faq-1",
            "FAQ",
            "Q and A",
            "text/markdown",
        )
        assert (event.tags, event.source, event.tenant) == (["faq"], "wiki", "acme")

    def test_missing_id_source_and_tenant_are_derived(self) -> None:
        """Without doc_id the id is file:line; source and tenant come from the run."""
        event = parse_line(
            _line(content="x"), default_id="data.jsonl:3", default_source="d:3", tenant="t1"
        )
        assert (event.doc_id, event.source, event.tenant, event.content_type) == (
            "data.jsonl:3",
            "d:3",
            "t1",
            "text/plain",
        )

    def test_bytes_take_their_type_from_the_filename(self) -> None:
        """Base64 content with a filename gets the extension's type, else a generic one."""
        encoded = base64.b64encode(b"%PDF-1.7").decode()
        with_name = parse_line(
            _line(content_base64=encoded, filename="r.PDF"),
            default_id="i",
            default_source="s",
            tenant="default",
        )
        without = parse_line(
            _line(content_base64=encoded), default_id="i", default_source="s", tenant="default"
        )
        assert (with_name.content_type, without.content_type) == (
            "application/pdf",
            "application/octet-stream",
        )

    def test_wrapped_base64_is_unwrapped(self) -> None:
        """Line breaks inside base64 are dropped before publishing."""
        encoded = base64.b64encode(bytes(100)).decode()
        event = parse_line(
            _line(content_base64=encoded[:60] + "\n" + encoded[60:]),
            default_id="i",
            default_source="s",
            tenant="default",
        )
        assert event.content_base64 == encoded

    def test_empty_bytes_beside_text_are_dropped(self) -> None:
        """An empty content_base64 next to text is published as no bytes at all."""
        event = parse_line(
            _line(content="x", content_base64=""),
            default_id="i",
            default_source="s",
            tenant="default",
        )
        assert (event.content, event.content_base64) == ("x", None)

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("{not json", "not JSON"),
            ("[1, 2]", "not a JSON object but list"),
            (_line(content="x", titel="typo"), "unknown fields titel"),
            (_line(title="no body"), "neither was given"),
            (_line(content="   "), "neither was given"),
            (_line(content="x", content_base64="eA=="), "both were given"),
            (_line(content_base64="%%%="), "content_base64 is not valid base64"),
            (_line(content_base64="eA="), "content_base64 is not valid base64"),
            (_line(content="x", tenant="no spaces"), "invalid tenant"),
            (_line(content="x", doc_id=" padded"), "doc id ' padded'"),
            (_line(content="x", doc_id=7), "doc_id must be a string"),
            (_line(content="x", tags="not-a-list"), "tags: Input should be a valid list"),
            (_line(kind="delete", doc_id="d"), "only upserts"),
        ],
    )
    def test_invalid_lines_say_why(self, line: str, message: str) -> None:
        """A line that is not a publishable document raises ValueError with the reason."""
        with pytest.raises(ValueError, match=message):
            parse_line(line, default_id="i", default_source="s", tenant="default")


class TestLoadDocuments:
    def test_files_and_lines_come_in_order_with_their_origins(self, tmp_path: Path) -> None:
        """Documents follow the plan's order; a bulk file's lines carry file:line origins."""
        _write(tmp_path / "a.md")
        bulk = _write(
            tmp_path / "b.jsonl",
            "\n".join([_line(doc_id="one", content="1"), "", _line(content="3")]) + "\n",
        )
        items = list(load_documents(discover([str(tmp_path)]), tenant="default"))
        assert all(isinstance(item, PreparedDocument) for item in items)
        docs = [item for item in items if isinstance(item, PreparedDocument)]
        assert [(d.event.doc_id, d.origin) for d in docs] == [
            ("a.md", str(tmp_path / "a.md")),
            ("one", f"{bulk}:1"),
            ("b.jsonl:3", f"{bulk}:3"),
        ]

    def test_bad_lines_and_empty_files_become_problems(self, tmp_path: Path) -> None:
        """An invalid line is a problem to report; an empty file is merely skipped."""
        _write(tmp_path / "empty.md", "")
        bulk = _write(tmp_path / "b.jsonl", "{oops\n" + _line(content="fine") + "\n")
        items = list(load_documents(discover([str(tmp_path)]), tenant="default"))
        problems = [item for item in items if isinstance(item, Problem)]
        assert [(p.origin, p.skipped) for p in problems] == [
            (f"{bulk}:1", False),
            (str(tmp_path / "empty.md"), True),
        ]
        assert sum(isinstance(item, PreparedDocument) for item in items) == 1

    def test_size_counts_the_source_bytes(self, tmp_path: Path) -> None:
        """Each document's size is that of its file, or of its line, for the byte counter."""
        _write(tmp_path / "a.txt", "12345")
        (item,) = load_documents(discover([str(tmp_path)]), tenant="default")
        assert isinstance(item, PreparedDocument)
        assert item.size == 5


class TestNextDocuments:
    def test_takes_up_to_the_count_then_the_rest(self, tmp_path: Path) -> None:
        """Items come in order, at most ``max_count`` at a time, then an empty list."""
        lines = [_line(doc_id=f"d{number}", content="x") for number in range(5)]
        _write(tmp_path / "b.jsonl", "\n".join(lines) + "\n")
        documents = load_documents(discover([str(tmp_path)]), tenant="default")
        taken = [next_documents(documents, 2, 1 << 20) for _ in range(4)]
        ids = [
            [item.event.doc_id for item in part if isinstance(item, PreparedDocument)]
            for part in taken
        ]
        assert ids == [["d0", "d1"], ["d2", "d3"], ["d4"], []]

    def test_stops_after_the_document_that_reaches_the_bytes(self, tmp_path: Path) -> None:
        """The document that brings the size to ``max_bytes`` is the trip's last, however large."""
        for name, size in (("a.txt", 600), ("b.txt", 600), ("c.txt", 2000), ("d.txt", 10)):
            _write(tmp_path / name, "x" * size)
        documents = load_documents(discover([str(tmp_path)]), tenant="default")
        sizes = [
            [
                item.size
                for item in next_documents(documents, 10, 1000)
                if isinstance(item, PreparedDocument)
            ]
            for _ in range(3)
        ]
        assert sizes == [[600, 600], [2000], [10]]

    def test_problems_travel_with_the_documents(self, tmp_path: Path) -> None:
        """A problem counts towards the items taken but weighs nothing."""
        _write(tmp_path / "b.jsonl", "{oops\n" + _line(content="fine") + "\n")
        documents = load_documents(discover([str(tmp_path)]), tenant="default")
        problem, document = next_documents(documents, 10, 1)
        assert isinstance(problem, Problem)
        assert isinstance(document, PreparedDocument)


class TestValidTenant:
    @pytest.mark.parametrize(("tenant", "valid"), [("acme-1_x", True), ("", False), ("a b", False)])
    def test_only_index_tenant_names_pass(self, tenant: str, valid: bool) -> None:
        """Tenants are letters, digits, '_' and '-', starting with a letter or digit."""
        assert valid_tenant(tenant) is valid
