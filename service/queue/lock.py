"""One server per data dir: an exclusive flock on ``queue.lock``, released when its holder stops or dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DataDirInUse(RuntimeError):
    """Another process holds the data dir."""


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._file = None

    def acquire(self) -> DataDirLock:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        file = open(self.data_dir / "queue.lock", "a+")  # noqa: SIM115 - held until release(); "a+" keeps the holder's pid
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.seek(0)
            holder = file.read().strip()
            file.close()
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise DataDirInUse(f"{self.data_dir} is in use by another gsic server ({who}); stop it or set "
                               "GSIC_DATA_DIR to another directory") from None
        file.truncate(0)
        file.write(str(os.getpid()))
        file.flush()
        self._file = file
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the flock
            self._file = None
