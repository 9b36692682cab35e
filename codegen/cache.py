"""On-disk cache of compiled kernels' object code.

Compiling a formula again in a new process should cost a file read, not an LLVM
optimization run. :class:`KernelCache` stores raw object-code bytes under a key
that hashes everything the machine code depends on (the caller passes IR text,
dtype, target triple, CPU name and features, symdiff and llvmlite versions).

What the cache guarantees, and why:

* **Whole entries or nothing.** Each entry is one file: a one-line plain-text
  header (format tag, key, sha256 and size of the payload) followed by the
  payload. Writes go to a temporary file in the same directory, are fsync'ed and
  then ``os.replace``'d into place, so a reader sees either the old or the new
  file, never half of one, and concurrent writers of one key all succeed.
  A truncated, corrupted or foreign entry fails the header or hash check; it is
  reported with a :class:`CacheWarning`, deleted, and reported as a miss so the
  caller rebuilds it.
* **Nothing executable from a place others can write.** On POSIX the cache
  directory must be owned by the current user and not group/other-writable, and
  each ancestor must be owned by the user or root and be either not
  group/other-writable or sticky (like ``/tmp``), so nobody else can swap the
  directory out. Each entry is opened without following symlinks and checked the
  same way. Otherwise the cache warns once and behaves as if disabled.
* **No code execution from data.** Entries are raw bytes plus a text header;
  nothing is unpickled or evaluated.
* **Bounded.** Past ``max_bytes`` the least recently used entries (by
  modification time, refreshed on every hit) are dropped.

Failures of the cache itself (full disk, read-only directory) never fail a
compilation: they warn and behave as a miss.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
import tempfile
import time
import warnings
from pathlib import Path

from symdiff.errors import SymdiffWarning

__all__ = ["CacheWarning", "KernelCache", "default_cache_directory"]

ENTRY_SUFFIX = ".kernel"
TEMP_PREFIX = ".tmp-"
FORMAT_TAG = b"symdiff-kernel-cache"
FORMAT_VERSION = b"1"
STALE_TEMP_SECONDS = 3600
DISABLING_VALUES = frozenset({"0", "false", "no", "off"})
_KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
_GROUP_OR_OTHER_WRITABLE = stat.S_IWGRP | stat.S_IWOTH


class CacheWarning(SymdiffWarning):
    """The kernel cache skipped an entry or refused a directory; compilation goes on without it."""


def default_cache_directory() -> Path:
    """The per-user cache directory of symdiff, following the platform convention.

    ``SYMDIFF_CACHE_DIR`` wins; otherwise ``%LOCALAPPDATA%\\symdiff\\Cache`` on
    Windows, ``~/Library/Caches/symdiff`` on macOS, and ``$XDG_CACHE_HOME/symdiff``
    (default ``~/.cache/symdiff``) elsewhere.
    """
    override = os.environ.get("SYMDIFF_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    home = Path.home()
    if sys.platform.startswith("win"):
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else home / "AppData" / "Local"
        return base / "symdiff" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "symdiff"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".cache"
    return base / "symdiff"


class KernelCache:
    """A directory of object-code entries, keyed by :meth:`key`.

    ``KernelCache(directory)`` creates ``directory`` (mode 0o700) if needed and
    checks it is safe, again before every load; if it is not, or cannot be
    created, the cache warns and is disabled: :meth:`get` misses and :meth:`put`
    stores nothing.
    """

    def __init__(self, directory: str | os.PathLike | None = None, max_bytes: int = 256 * 2**20):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_directory()
        self.max_bytes = int(max_bytes)
        self.reason_disabled: str | None = None
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            self._disable(f"cannot create cache directory {self.directory}: {exc}")
            return
        problem = _unsafe_directory_reason(self.directory)
        if problem:
            self._disable(problem)

    @classmethod
    def default(cls) -> KernelCache | None:
        """The user's cache, or ``None`` when ``SYMDIFF_CACHE`` is 0/false/no/off."""
        if os.environ.get("SYMDIFF_CACHE", "").strip().lower() in DISABLING_VALUES:
            return None
        return cls(default_cache_directory())

    @property
    def enabled(self) -> bool:
        return self.reason_disabled is None

    @staticmethod
    def key(*parts: str | bytes) -> str:
        """sha256 hex digest of the parts, each length-prefixed so that no two lists collide."""
        digest = hashlib.sha256()
        for part in parts:
            if isinstance(part, str):
                part = part.encode("utf-8")
            elif not isinstance(part, (bytes, bytearray, memoryview)):
                raise TypeError(f"cache key parts must be str or bytes, got {type(part).__name__}")
            part = bytes(part)
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.hexdigest()

    def get(self, key: str) -> bytes | None:
        """The stored bytes of ``key`` if the entry is whole and safe, else ``None``.

        A damaged or foreign entry is warned about and deleted. A hit refreshes
        the entry's time stamp, which orders least-recently-used eviction.
        """
        path = self._entry_path(key)
        if not self.enabled:
            return None
        problem = _unsafe_directory_reason(self.directory)
        if problem:
            self._disable(problem)
            return None
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn(f"cannot open cache entry {path}: {exc}; ignoring it")
            return None
        try:
            info = os.fstat(fd)
            problem = _unsafe_file_reason(info)
            if problem:
                self._warn(f"refusing cache entry {path}: {problem}")
                return None
            with os.fdopen(fd, "rb", closefd=False) as stream:
                blob = stream.read()
        except OSError as exc:
            self._warn(f"cannot read cache entry {path}: {exc}; ignoring it")
            return None
        finally:
            os.close(fd)
        payload, problem = _parse_entry(blob, key)
        if problem:
            self._warn(f"cache entry {path} is {problem}; deleting it, the kernel will be rebuilt")
            _remove_quietly(path)
            return None
        try:
            os.utime(path)
        except OSError:
            pass
        return payload

    def put(self, key: str, data: bytes) -> bool:
        """Store ``data`` under ``key`` atomically; True if it was stored.

        Entries larger than ``max_bytes`` are not stored. After storing, least
        recently used entries are dropped until the total fits in ``max_bytes``.
        """
        path = self._entry_path(key)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"cache data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if not self.enabled:
            return False
        blob = _entry_header(key, data) + data
        if len(blob) > self.max_bytes:
            return False
        try:
            fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.directory)
        except OSError as exc:
            self._warn(f"cannot write to cache directory {self.directory}: {exc}")
            return False
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(blob)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp_name, path)
        except OSError as exc:
            _remove_quietly(Path(temp_name))
            self._warn(f"cannot write cache entry {path}: {exc}")
            return False
        _fsync_directory(self.directory)
        self._evict()
        return True

    def info(self) -> dict:
        """Directory, entry count, total bytes, size limit, and whether the cache is enabled."""
        entries = self._entries()
        return {
            "directory": str(self.directory),
            "entries": len(entries),
            "total_bytes": sum(size for _, size, _ in entries),
            "max_bytes": self.max_bytes,
            "enabled": self.enabled,
            "reason_disabled": self.reason_disabled,
        }

    def clear(self) -> int:
        """Delete every entry (and leftover temporary files); the number of entries removed."""
        removed = sum(_remove_quietly(path) for path, _, _ in self._entries())
        self._remove_stale_temporaries(max_age=0.0)
        return removed

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else f"disabled: {self.reason_disabled}"
        return f"KernelCache({str(self.directory)!r}, max_bytes={self.max_bytes}, {state})"

    def _entry_path(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
            raise ValueError(f"cache key must be 64 lowercase hex digits from KernelCache.key, got {key!r}")
        return self.directory / (key + ENTRY_SUFFIX)

    def _entries(self) -> list[tuple[Path, int, int]]:
        """(path, size, mtime_ns) of every entry file; empty if the directory is unreadable."""
        entries = []
        try:
            scan = list(os.scandir(self.directory))
        except OSError:
            return entries
        for item in scan:
            if not item.name.endswith(ENTRY_SUFFIX) or not _KEY_PATTERN.fullmatch(item.name[: -len(ENTRY_SUFFIX)]):
                continue
            try:
                info = item.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                entries.append((Path(item.path), info.st_size, info.st_mtime_ns))
        return entries

    def _evict(self) -> None:
        entries = sorted(self._entries(), key=lambda entry: entry[2])
        total = sum(size for _, size, _ in entries)
        for path, size, _ in entries:
            if total <= self.max_bytes:
                break
            _remove_quietly(path)
            total -= size
        self._remove_stale_temporaries(max_age=STALE_TEMP_SECONDS)

    def _remove_stale_temporaries(self, max_age: float) -> None:
        """Delete temporary files a crashed writer left behind, once they are older than ``max_age`` s."""
        now = time.time()
        try:
            scan = list(os.scandir(self.directory))
        except OSError:
            return
        for item in scan:
            if not item.name.startswith(TEMP_PREFIX):
                continue
            try:
                if now - item.stat(follow_symlinks=False).st_mtime >= max_age:
                    _remove_quietly(Path(item.path))
            except OSError:
                continue

    def _disable(self, reason: str) -> None:
        self.reason_disabled = reason
        self._warn(f"kernel cache disabled: {reason}", stacklevel=4)

    @staticmethod
    def _warn(message: str, stacklevel: int = 3) -> None:
        """Warn at the line that called the public method (``stacklevel`` counts from here)."""
        warnings.warn(message, CacheWarning, stacklevel=stacklevel)


def _entry_header(key: str, data: bytes) -> bytes:
    digest = hashlib.sha256(data).hexdigest()
    return b" ".join([FORMAT_TAG, FORMAT_VERSION, key.encode(), digest.encode(), str(len(data)).encode()]) + b"\n"


def _parse_entry(blob: bytes, key: str) -> tuple[bytes | None, str | None]:
    """(payload, None) for a whole entry of ``key``, else (None, what is wrong with it)."""
    newline = blob.find(b"\n", 0, 256)
    if newline < 0:
        return None, "foreign (no symdiff header)"
    fields = blob[:newline].split(b" ")
    if len(fields) != 5 or fields[0] != FORMAT_TAG:
        return None, "foreign (no symdiff header)"
    tag, version, stored_key, digest, size = fields
    if version != FORMAT_VERSION:
        return None, f"of another format version ({version.decode(errors='replace')})"
    if stored_key != key.encode():
        return None, "foreign (stored under another key)"
    if not size.isdigit():
        return None, "foreign (malformed header)"
    payload = blob[newline + 1:]
    if len(payload) < int(size):
        return None, f"truncated ({len(payload)} of {int(size)} bytes)"
    if len(payload) > int(size):
        return None, f"corrupted ({len(payload)} bytes, header says {int(size)})"
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        return None, "corrupted (content hash mismatch)"
    return payload, None


def _unsafe_directory_reason(directory: Path) -> str | None:
    """Why ``directory`` is unsafe to load native code from (None if safe; always None off POSIX).

    The directory itself must belong to the current user and be writable by no
    one else. Every ancestor must belong to the user or root and be either not
    writable by others or sticky, so no other user can rename the directory away
    and put theirs in its place.
    """
    if os.name != "posix":
        return None
    uid = os.geteuid()
    try:
        resolved = directory.resolve(strict=True)
        info = os.stat(resolved)
    except OSError as exc:
        return f"cannot inspect {directory}: {exc}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{resolved} is not a directory"
    if info.st_uid != uid:
        return f"{resolved} is owned by uid {info.st_uid}, not by the current user (uid {uid})"
    if info.st_mode & _GROUP_OR_OTHER_WRITABLE:
        return f"{resolved} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
    for ancestor in resolved.parents:
        try:
            info = os.stat(ancestor)
        except OSError as exc:
            return f"cannot inspect {ancestor}: {exc}"
        if info.st_uid not in (uid, 0):
            return f"parent directory {ancestor} is owned by uid {info.st_uid}, neither the current user nor root"
        if info.st_mode & _GROUP_OR_OTHER_WRITABLE and not info.st_mode & stat.S_ISVTX:
            return f"parent directory {ancestor} is writable by group or others and not sticky (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _unsafe_file_reason(info: os.stat_result) -> str | None:
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if os.name != "posix":
        return None
    uid = os.geteuid()
    if info.st_uid != uid:
        return f"owned by uid {info.st_uid}, not by the current user (uid {uid})"
    if info.st_mode & _GROUP_OR_OTHER_WRITABLE:
        return f"writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _remove_quietly(path: Path) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable on POSIX; a no-op where directories cannot be opened."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
