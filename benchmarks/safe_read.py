"""Reading files a user (or a cluster's file system) hands over: only regular files, never more than a bound.

Every file the suite reads (config files and their ``base:``, ``record.json``, ``history.jsonl``, sweep
manifests, ``compare --plan``) goes through :func:`open_regular`. A FIFO would block ``open()`` forever and
``/dev/zero`` never ends, so the file is opened with ``O_NONBLOCK`` (a FIFO without a writer opens at once)
and checked with ``fstat`` on the descriptor itself (no race between a check and the open). Errors are
``OSError`` subclasses whose ``strerror`` is one readable phrase, so callers that already report an unreadable
file name these too. Imports nothing from the rest of the project, so every layer can use it.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

#: bounds of the files the suite reads (far above any real one; they stop a runaway file, not a big run)
MAX_CONFIG_BYTES = 8 * 2**20
MAX_RECORD_BYTES = 32 * 2**20
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_PLAN_BYTES = 64 * 2**20
#: one line of history.jsonl (a line is one logged point: a few hundred bytes)
MAX_HISTORY_LINE = 2**20


class NotRegularFile(OSError):
    """The path is a FIFO, a device, a socket or a folder where a file belongs."""


class FileTooLarge(OSError):
    """The file is larger than the bound for its kind."""


def kind_of(mode: int) -> str:
    """``a file``, ``a folder``, ``a FIFO (named pipe)``, ... for an ``st_mode``."""
    for test, name in ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "an unknown kind of file"


def size_text(n: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def open_regular(path: str | os.PathLike, max_bytes: int | None = None) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file (symlinks to one are fine) of at most
    ``max_bytes``; otherwise raise :class:`NotRegularFile` / :class:`FileTooLarge` (or the OSError of the
    open: missing, permission, a symlink loop)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = kind_of(st.st_mode)
            raise NotRegularFile(errno.EISDIR if what == "a folder" else errno.EINVAL,
                                 f"is {what}, not a regular file", str(path))
        if max_bytes is not None and st.st_size > max_bytes:
            raise FileTooLarge(errno.EFBIG, f"is {size_text(st.st_size)}, more than the {size_text(max_bytes)} "
                                            f"a file of this kind may have", str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see :func:`open_regular`). A file that grows past
    the bound while it is read is refused too."""
    with open_regular(path, max_bytes) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLarge(errno.EFBIG, f"grew past the {size_text(max_bytes)} a file of this kind may have",
                           str(path))
    return data


def describe(exc: OSError) -> str:
    """One phrase for an OSError of reading: ``is a FIFO ...``, ``Too many levels of symbolic links``, ..."""
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop (too many levels of symbolic links)"
    return exc.strerror or str(exc)


def utf8_text(raw: bytes, source: str) -> str:
    """Decode UTF-8; a bad byte raises ``ValueError`` naming ``source``, the byte and its offset/line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{source} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at byte offset {exc.start} "
                         f"(line {line})") from None


__all__ = ["FileTooLarge", "MAX_CONFIG_BYTES", "MAX_HISTORY_LINE", "MAX_MANIFEST_BYTES", "MAX_PLAN_BYTES",
           "MAX_RECORD_BYTES", "NotRegularFile", "describe", "kind_of", "open_regular", "read_regular",
           "size_text", "utf8_text"]
