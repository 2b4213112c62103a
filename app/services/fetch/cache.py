"""The shared cache on disk: content-addressed folders (`<sha256[:2]>/<sha256>/`)
holding each file under the name ChimeraX gave it (its readers go by the
suffix), read-only to everyone but the service; indexed in the store."""
import os
import shutil

from ...store.fetch_queries import CacheEntry
from .download import Downloaded


class Cache:
    def __init__(self, root: str, max_bytes: int) -> None:
        self.root, self.max_bytes = root, max_bytes

    def prepare(self) -> None:
        os.makedirs(self.root, mode=0o755, exist_ok=True)

    def path(self, entry: CacheEntry) -> str:
        return os.path.join(self.root, entry.sha256[:2], entry.sha256, entry.save_name)

    def intact(self, entry: CacheEntry) -> bool:
        """The file is there as it was stored (a changed size or time: not served)."""
        try:
            stat = os.stat(self.path(entry))
        except OSError:
            return False
        return stat.st_size == entry.size and stat.st_mtime_ns == entry.mtime_ns

    def place(self, downloaded: Downloaded, save_name: str) -> int:
        """Move a download into its place; the stored file's mtime (ns)."""
        folder = os.path.join(self.root, downloaded.sha256[:2], downloaded.sha256)
        os.makedirs(folder, mode=0o755, exist_ok=True)
        final = os.path.join(folder, save_name)
        try:
            os.replace(downloaded.path, final)
        except OSError:
            os.unlink(downloaded.path)
            raise
        return os.stat(final).st_mtime_ns

    def remove(self, entry: CacheEntry, file_shared: bool, folder_shared: bool) -> None:
        """Delete an entry's file unless another entry names the same file, and
        its folder once no entry has that content."""
        if not file_shared:
            try:
                os.unlink(self.path(entry))
            except FileNotFoundError:
                pass
        if not folder_shared:
            shutil.rmtree(os.path.dirname(self.path(entry)), ignore_errors=True)
