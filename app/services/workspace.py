"""A session's workspace files: safe names, an extension allowlist and a quota.

Files live flat in the workspace (no sub-folders), named by what the user
sent, so a name is all a command or a download needs. ChimeraX's own files
there (its log, its stdin FIFO, snapshot scratch) are hidden and protected.
"""
import os
import re
import tempfile
from dataclasses import dataclass

from .errors import ServiceError

UPLOAD_SUFFIXES = (".pdb", ".ent", ".pdb1", ".cif", ".mmcif", ".mrc", ".map", ".ccp4", ".dx",
                   ".sdf", ".mol2", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
INTERNAL = ("chimerax.log",)


class BadFile(ServiceError):
    code = "bad_file"


class FileNotFound(ServiceError):
    code = "file_not_found"


class QuotaExceeded(ServiceError):
    code = "quota_exceeded"


@dataclass
class FileInfo:
    name: str
    size: int
    modified: float


def check_name(name, suffixes=UPLOAD_SUFFIXES):
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise BadFile("file names are 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if name in INTERNAL or not name.lower().endswith(suffixes):
        raise BadFile("files must end in one of %s" % " ".join(suffixes))
    return name


class Workspace:
    def __init__(self, path, quota_bytes):
        self.path = path
        self.quota_bytes = quota_bytes

    def _visible(self):
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.startswith(".") or entry.name in INTERNAL:
                    continue
                if entry.is_file(follow_symlinks=False):
                    yield entry

    def list(self):
        files = [FileInfo(e.name, e.stat().st_size, e.stat().st_mtime) for e in self._visible()]
        return sorted(files, key=lambda f: f.name)

    def used_bytes(self):
        return sum(e.stat(follow_symlinks=False).st_size for e in self._visible())

    def path_of(self, name):
        """Existing regular file inside the workspace (never through a symlink)."""
        check_name(name)
        path = os.path.join(self.path, name)
        if not os.path.isfile(path) or os.path.islink(path):
            raise FileNotFound("no file %s in this session" % name)
        return path

    def save(self, name, stream, max_bytes):
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

    def delete(self, name):
        os.unlink(self.path_of(name))
