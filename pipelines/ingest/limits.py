"""Named bounds for ingest. Each one that bites is named in the document's reason or skip list."""

from __future__ import annotations

from dataclasses import dataclass


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
