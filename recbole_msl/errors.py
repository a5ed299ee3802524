"""One exception type for user mistakes, so the CLI can print them as one line."""

import os
import re


class ConfigError(ValueError):
    """Bad configuration or input data; the message names the fix."""


class UnknownOptionError(ConfigError):
    """An option no configuration layer knows (a typo such as ``--lerning_rate``); names the closest known keys."""


class DataMismatchError(ConfigError):
    """A checkpoint used with data other than the data it was trained on (another location, other items or titles)."""


class DamagedCheckpointError(ConfigError):
    """A checkpoint file that fails its checksum, cannot be read, or holds non-finite weights."""


class EmptyRankingError(ConfigError):
    """A ranking that finished no title at all (never returned as an empty answer)."""


class DiskWriteError(ConfigError, OSError):
    """A file or folder that could not be written (disk full, quota, read-only, permission); names the place and
    what to do. Also an ``OSError`` (``errno`` kept), so code that catches OSError still does."""

    def __init__(self, message: str, cause: OSError | None = None):
        super().__init__(message)
        self.message = message
        if cause is not None:
            self.errno, self.strerror, self.filename = cause.errno, cause.strerror, cause.filename

    def __str__(self) -> str:  # OSError's would print "[Errno 28] ..." once errno is set
        return self.message


class TrainingDivergedError(ConfigError):
    """The training loss became NaN or infinite; names the step, the likely cause and the last good resume folder."""


class ComparisonLockedError(ConfigError):
    """Another process is running the same comparison in the same results folder."""


def disk_write_error(err: OSError, what: str, fix: str, show_file: bool = True) -> DiskWriteError | None:
    """A one-line :class:`DiskWriteError` for a failed write of ``what`` (None for errors that are not about the
    disk: those stay what they are). ``fix`` says what else to do, e.g. "set --checkpoint_dir to another disk";
    ``show_file=False`` leaves out the file (a temporary one, already removed)."""
    import errno as codes

    if isinstance(err, DiskWriteError):
        return err
    place = f" ({err.filename})" if show_file and getattr(err, "filename", None) else ""
    if err.errno in (codes.ENOSPC, codes.EDQUOT):
        why = "no space left on the device" if err.errno == codes.ENOSPC else "the disk quota is exhausted"
        return DiskWriteError(f"{why} while writing {what}{place}; free space there or {fix}", err)
    if err.errno in (codes.EACCES, codes.EPERM, codes.EROFS):
        why = "the file system is read-only" if err.errno == codes.EROFS else "permission denied"
        return DiskWriteError(f"cannot write {what}{place}: {why}; {fix}", err)
    return None


def as_os_error(err: Exception, filename: str | None = None) -> OSError:
    """safetensors' Rust writer reports a full disk as ``SafetensorError("... IoError(Os { code: 28, ... })")``, no
    OSError; this gives it back its errno, so a full disk while writing tensors reads like any other."""
    found = re.search(r"\bcode:\s*(\d+)", str(err))
    if found is None:
        return OSError(5, first_line(err), filename)  # EIO: an I/O error without a code
    code = int(found.group(1))
    return OSError(code, os.strerror(code), filename)


def first_line(err: BaseException) -> str:
    """The first non-blank line of an error's message, or its type's name when the message is empty."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__
