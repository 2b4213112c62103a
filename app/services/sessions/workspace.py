"""A session's workspace files: safe names, an extension allowlist and a quota.

Files live flat in the workspace (no sub-folders), named by what the user
sent, so a name is all a command or a download needs. Names starting with
a dot (snapshot and upload scratch) are hidden. The quota covers everything
in the folder, whoever wrote it: uploads are refused beyond it, and files a
ChimeraX command wrote beyond it are removed (`remove_over_quota`).
"""
import builtins
from collections.abc import Iterator
from dataclasses import dataclass
import os
import re
import tempfile
from typing import BinaryIO

from ..errors import ServiceError

# One source for file types: what ChimeraX may open and save (the command
# policy) is what the files API lists, accepts, serves and deletes.
OPEN_SUFFIXES = (".pdb", ".ent", ".pdb1", ".cif", ".mmcif", ".mrc", ".map", ".ccp4", ".dx", ".sdf", ".mol2")
SAVE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pdb", ".cif", ".mrc", ".map")
FILE_SUFFIXES = tuple(sorted(set(OPEN_SUFFIXES + SAVE_SUFFIXES)))
FILE_NAME_MAX = 128
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,%d}$" % (FILE_NAME_MAX - 1))


def _any_case(text):
    return "".join("[%s%s]" % (c.lower(), c.upper()) if c.isalpha() else re.escape(c) for c in text)


# The two checks of check_name as one ECMAScript-compatible pattern (with
# maxLength FILE_NAME_MAX), for the API document.
FILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(?:%s)$" % "|".join(map(_any_case, FILE_SUFFIXES))


class BadFile(ServiceError):
    code, status, when = "bad_file", 400, "a file name or upload the workspace does not take (naming the rule)"


class FileNotFound(ServiceError):
    code, status, when = "file_not_found", 404, "no such file in the session's workspace"


class QuotaExceeded(ServiceError):
    code, status, when = "quota_exceeded", 413, "the workspace would be over WORKSPACE_QUOTA_MB"


@dataclass
class FileInfo:
    name: str
    size: int
    modified: float


def check_name(name: object, suffixes: tuple[str, ...] = FILE_SUFFIXES) -> str:
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise BadFile("file names are 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if not name.lower().endswith(suffixes):
        raise BadFile("files must end in one of %s" % " ".join(suffixes))
    return name


class Workspace:
    def __init__(self, path: str, quota_bytes: int) -> None:
        self.path = path
        self.quota_bytes = quota_bytes

    def _visible(self) -> Iterator[os.DirEntry[str]]:
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_file(follow_symlinks=False):
                    yield entry

    def list(self) -> list[FileInfo]:
        files = [FileInfo(e.name, e.stat().st_size, e.stat().st_mtime) for e in self._visible()]
        return sorted(files, key=lambda f: f.name)

    def used_bytes(self) -> int:
        return sum(e.stat(follow_symlinks=False).st_size for e in self._visible())

    def path_of(self, name: str) -> str:
        """Existing regular file inside the workspace (never through a symlink)."""
        check_name(name)
        path = os.path.join(self.path, name)
        if not os.path.isfile(path) or os.path.islink(path):
            raise FileNotFound("no file %s in this session" % name)
        return path

    def save(self, name: str, stream: BinaryIO, max_bytes: int) -> FileInfo:
        """Write `stream` as `name`, atomically; enforces the size limit and quota."""
        check_name(name)
        target = os.path.join(self.path, name)
        if os.path.islink(target):
            raise BadFile("%s exists as a link" % name)
        previous = os.path.getsize(target) if os.path.isfile(target) else 0
        room = self.quota_bytes - (self.used_bytes() - previous)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=self.path)
        written = 0
        try:
            # A sandboxed ChimeraX runs as the folder's owner: it must be able to read this.
            owner = os.stat(self.path)
            if owner.st_uid != os.geteuid():
                os.fchown(fd, owner.st_uid, owner.st_gid)
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = stream.read(1 << 16)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > max_bytes:
                        raise QuotaExceeded("file larger than the upload limit of %d bytes" % max_bytes)
                    if written > room:
                        raise QuotaExceeded("workspace quota of %d MB exceeded" % (self.quota_bytes // 2**20))
                    out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        return FileInfo(name, written, os.path.getmtime(target))

    def remove_over_quota(self, since: float) -> builtins.list[str]:
        """If the folder is over quota, remove files changed at or after `since`
        (newest first) until it is not; returns their names."""
        total, recent = 0, []
        for dirpath, _dirnames, filenames in os.walk(self.path):
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                total += info.st_size
                if info.st_mtime >= since - 0.05:   # coarse file-system clocks
                    recent.append((info.st_mtime, info.st_size, path))
        removed = []
        for _, size, path in sorted(recent, reverse=True):
            if total <= self.quota_bytes:
                break
            try:
                os.unlink(path)
            except OSError:
                continue
            total -= size
            removed.append(os.path.relpath(path, self.path))
        return removed

    def delete(self, name: str) -> None:
        os.unlink(self.path_of(name))
