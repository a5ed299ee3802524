"""Line-by-line reading of plain or gzip text files, with the line number kept for one-line error messages.

Category files of the Amazon releases are several GB, so nothing here ever holds more than one line;
a truncated download or a file in another encoding becomes a :class:`ConfigError` that names the line.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable, Iterator

from ..errors import ConfigError

PROGRESS_EVERY = 1_000_000


def require_file(path: str, what: str, fix: str) -> str:
    """``path`` if it is a file, else a one-line error saying what it should be and how to get it."""
    if not path:
        raise ConfigError(f"no {what} given; {fix}")
    if not os.path.isfile(path):
        raise ConfigError(f"{what} {path} does not exist; {fix}")
    return path


def stem(path: str) -> str:
    """File name without folder, ``.gz`` and the format suffix: ``meta_Books.json.gz`` -> ``meta_Books``."""
    return os.path.splitext(os.path.basename(path).removesuffix(".gz"))[0]


def format_suffix(path: str) -> str:
    """The suffix that tells the format, ignoring ``.gz``: ``a.tsv.gz`` -> ``.tsv``."""
    return os.path.splitext(path.removesuffix(".gz"))[1].lower()


class Lines:
    """The lines of a text file (gzip when the name ends in ``.gz``); ``lineno`` is the line last yielded.

    Iterate it directly, or hand it to ``csv.reader``; ``error`` builds the one-line message for the
    current line.
    """

    def __init__(self, path: str, progress: Callable[[str], None] | None = None):
        self.path = path
        self.lineno = 0
        self.progress = progress

    def _open(self, binary: bool = False):
        """Text with a leading UTF-8 byte order mark dropped (editors on Windows write one), or the raw bytes."""
        if binary:
            return gzip.open(self.path, "rb") if self.path.endswith(".gz") else open(self.path, "rb")
        if self.path.endswith(".gz"):
            return gzip.open(self.path, "rt", encoding="utf-8-sig", newline="")
        return open(self.path, encoding="utf-8-sig", newline="")

    def __iter__(self) -> Iterator[str]:
        self.lineno = 0
        try:
            with self._open() as f:
                for line in f:
                    self.lineno += 1
                    if self.lineno % PROGRESS_EVERY == 0 and self.progress:
                        self.progress(f"{os.path.basename(self.path)}: {self.lineno:,} lines")
                    yield line
        except UnicodeDecodeError:
            raise self._encoding_error() from None
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise self.error(f"cannot be read further ({err})",
                             "the file looks truncated or corrupt: download it again", after=True) from None

    def _encoding_error(self) -> ConfigError:
        """The line that is not UTF-8: text is decoded in blocks, ahead of the lines handed out, so the bytes are
        read again, line by line, up to the first one that does not decode (only on this error path)."""
        self.lineno, where = 0, ""
        try:
            with self._open(binary=True) as f:
                for raw in f:
                    self.lineno += 1
                    try:
                        raw.decode("utf-8")
                    except UnicodeDecodeError as err:
                        where = f" (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
                        break
        except (OSError, EOFError, zlib.error) as err:  # the bytes after it are damaged too: name the last good line
            return self.error(f"is not UTF-8 text ({err})", "re-encode the file as UTF-8", after=True)
        return self.error(f"is not UTF-8 text{where}", "re-encode the file as UTF-8")

    def error(self, problem: str, fix: str, after: bool = False) -> ConfigError:
        """``<path> line N: <problem>; <fix>`` (``after``: the damage is past the last line read)."""
        where = f"after line {self.lineno}" if after else f"line {self.lineno}"
        return ConfigError(f"{self.path} {where}: {problem}; {fix}")
