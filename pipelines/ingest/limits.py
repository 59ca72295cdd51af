"""Named bounds for ingest. Each one that bites is named in the document's reason or skip list."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_source_bytes: int = 1024 * 1024 * 1024  # a PDF or archive file (or S3 object) larger than this fails unread
    max_pdf_pages: int = 5_000  # a PDF declaring more pages is failed, not truncated
    max_file_bytes: int = 1_000_000  # a repository file larger than this is skipped ("too large")
    max_line_chars: int = 1_000  # a file whose average line is longer is treated as minified
    max_repo_files: int = 20_000  # repository members beyond this fail the document
    max_archive_bytes: int = 512 * 1024 * 1024  # expanded size of an archive's kept members
    # declared bytes of ALL members of a tar stream (kept or not): walking past a member means
    # decompressing it, so a tar.gz bomb fails here instead of burning CPU
    max_archive_scan_bytes: int = 4 * 1024 * 1024 * 1024
    max_text_bytes: int = 64 * 1024 * 1024  # a plain-text document larger than this is failed
    # The parse of one document runs in a child process (sandbox.py). It is killed when it takes
    # longer than parse_timeout_s (wall clock), and runs out of memory past parse_memory_bytes of
    # address space (RLIMIT_AS counts virtual memory; the child starts at about 70 MiB, a
    # 2,000-page PDF peaks near 110 MiB). Either way the document fails naming the setting and the
    # run goes on. 0 turns a bound off; both 0: the parse runs in the calling process, unbounded.
    parse_timeout_s: float = 300.0
    parse_memory_bytes: int = 4 * 1024 * 1024 * 1024
    max_page_chars: int = 500_000  # a PDF page's text is cut here; the cut is listed in the skip list
    max_document_chars: int = 100_000_000  # a document whose text (all pages or files) is longer fails

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"{f.name} must be >= 0, got {getattr(self, f.name)}")
