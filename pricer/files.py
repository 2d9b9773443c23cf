"""Files a run depends on, written whole or not at all and checked when read back.

    atomic_write(path, text)                    # an interrupted write leaves the old file, never half a new one
    with atomic_folder(out) as tmp: ...         # a folder appears complete, or not at all
    record = read_json(path, "run record")      # DataError naming the file and the remedy if it is damaged
    rows, skipped = read_jsonl(path)            # bad lines skipped, each named by file and line
    acquire_lock(run_dir, "training")           # one process per folder; a dead process holds nothing
    check_folder(out, "--output-dir", need=2e9) # before any work: a folder (made if missing), writable, room
    check_file(path, "test split")              # a regular, readable file (not a folder, not a link loop)

Colab disconnects, kills and full disks interrupt writes; a file read back is trusted only
after it parses, so a damaged one is named (and skipped where an older good one exists)
instead of crashing the next run with a bare traceback.
"""

import contextlib
import errno
import json
import os
import shutil
import stat
import socket
import time
import uuid
from pathlib import Path

from pricer.errors import DataError, PricerError, ResourceError


def _temp_name(path: Path) -> Path:
    """A sibling name no other process or thread will pick: several may write the same file at once."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write a file through a temporary sibling and a rename: readers see the old or the new, whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from None  # a failed write() names no file: this one
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, value) -> Path:
    """`value` as indented JSON, atomically, redacted (a key typed into a setting is never saved)."""
    from pricer.env import redact

    return atomic_write(path, redact(json.dumps(value, indent=1, default=str, ensure_ascii=False)) + "\n")


def write_jsonl(path: str | Path, rows) -> Path:
    """One JSON object per line, atomically (UTF-8, not escaped: real product text stays readable)."""
    return atomic_write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


@contextlib.contextmanager
def atomic_folder(out: str | Path):
    """Yield a temporary folder; on success it is renamed to `out` (an existing `out` is left as it is)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(out)
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)  # callers only rebuild a folder they found damaged
        try:
            tmp.rename(out)
        except OSError:  # another process renamed its identical copy first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_json(path: str | Path, what: str, remedy: str = "delete or fix it") -> dict:
    """A JSON object from `path`, or a DataError naming the file, what it is and how to go on."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DataError(f"{path}: the {what} is missing; {remedy}") from None
    except OSError as e:  # a folder, a link loop, no permission
        raise DataError(f"the {what} {os_problem(e, path)}; {remedy}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: the {what} is damaged (not valid JSON: {e}); {remedy}") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: the {what} should be a JSON object, not {type(value).__name__}; {remedy}")
    return value


def read_jsonl(path: str | Path) -> tuple[list, list[str]]:
    """(rows, problems): every line that parses as JSON, and 'file, line N: why' for each that doesn't.

    Read as utf-8-sig, so a byte-order mark (Windows editors, Excel) is not part of the first row."""
    path = check_file(path, "data file")
    rows, problems = [], []
    with path.open(encoding="utf-8-sig", errors="strict") as f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    problems.append(f"{path.name}, line {n}: not valid JSON ({e.msg})")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text near byte {e.start}; save it as UTF-8") from None
    return rows, problems


def os_problem(error: OSError, path=None) -> str:
    """An OS error as 'FILE: what is wrong: what to do', in words a user acts on (the disk full, read-only, ...)."""
    where = str(error.filename or path or "")
    shown = where if len(where) <= 120 else f"{where[:60]}...{where[-40:]}"
    fixes = {
        errno.ENOSPC: f"the disk is full ({_free(where)} free there): free space or choose a folder on another "
                      "disk, then rerun the same command (it resumes)",
        errno.EDQUOT: "your disk quota is used up: free space or choose another folder, then rerun",
        errno.EROFS: "it is on a read-only file system: choose a folder you can write to",
        errno.EACCES: "permission denied: choose a folder or file you can write to (or fix its permissions)",
        errno.EPERM: "the operation is not permitted there: choose another folder",
        errno.ENAMETOOLONG: f"the name is too long ({len(where)} characters; a folder or file name may have at "
                            "most 255 bytes): choose a shorter path",
        errno.ENOTDIR: "a part of this path is a file, not a folder: give a folder, or move the file away",
        errno.EISDIR: "is a folder where a file belongs: give the file inside it",
        errno.ENOENT: "no such file or folder: check the path",
        errno.ELOOP: "a symbolic link that points round in a loop: fix or remove the link",
        errno.EEXIST: "already exists and is in the way: move it or choose another name",
        errno.EIO: "the disk reported an input/output error: check the disk, or use another folder",
    }
    why = fixes.get(error.errno) or f"{error.strerror or error}: check that path"
    return f"{shown}: {why}" if shown else why


def _free(where: str) -> str:
    """Free space on the disk holding `where` (its nearest existing folder), in words."""
    path = Path(where or ".")
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return _size(shutil.disk_usage(path).free)
    except OSError:
        return "unknown"


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


def check_folder(path: str | Path, setting: str, need: float = 0) -> Path:
    """A folder to write into, made if missing; a ResourceError naming `setting` unless it can be made, is
    writable (tried, so read-only mounts and root alike are told) and has `need` bytes free."""
    path = Path(path).expanduser()
    long = next((p for p in path.parts if len(p.encode()) > 255), None)
    if long or len(str(path).encode()) > 4000:
        raise ResourceError(f"{setting} {str(path)[:60]}...: the name is too long ({len(str(path))} characters; a "
                            "folder name may have at most 255 bytes): choose a shorter path")
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"can't be made: {existing} is a file"
        raise ResourceError(f"{setting} {path} {where}, not a folder: give a folder (it is made if missing)")
    probe = path / f".pricer-write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"pricer")
    except OSError as e:  # named as the setting gave it, not the probe inside it
        raise ResourceError(f"{setting} {os_problem(OSError(e.errno, e.strerror, str(path)))}") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    free = shutil.disk_usage(path).free
    if need and free < need:
        raise ResourceError(f"{setting} {path}: {_size(free)} free on its disk, and this needs about {_size(need)}: "
                            "free space there or choose a folder on another disk")
    return path


def check_file(path: str | Path, what: str) -> Path:
    """A regular file that can be read; a DataError naming it and why not (a folder, a link loop, unreadable)."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise DataError(f"{path}: the {what} is a folder, not a file: give the file (or move the folder away)")
        if not stat.S_ISREG(mode):
            raise DataError(f"{path}: the {what} is not a regular file (a pipe or device): give a file")
        with path.open("rb") as f:
            f.read(1)
    except OSError as e:  # named as asked for: the link, not the file it loops through
        raise DataError(f"the {what} {os_problem(OSError(e.errno, e.strerror, str(path)))}") from None
    return path


def _holder(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text())
        return f"process {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


_HELD: dict[Path, object] = {}  # folders this process holds, so taking one again (a rerun cell) is no conflict


def acquire_lock(folder: str | Path, what: str) -> Path:
    """Hold `folder` for this process until `release_lock` or exit; another process is refused, naming the holder.

    An OS lock (flock) on `folder/.pricer.lock`: released when the holder exits or is killed, so
    a dead process never blocks the folder. Where the file system has no locks (some network
    mounts), the lock file's process id is checked instead."""
    import fcntl

    folder = Path(folder).resolve()
    if folder in _HELD:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".pricer.lock"
    handle = lock.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise _busy(folder, what, lock) from None
    except OSError:  # no flock on this file system: fall back to the process id in the file
        if _alive_holder(lock):
            handle.close()
            raise _busy(folder, what, lock) from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%H:%M:%S")}))
    handle.flush()
    _HELD[folder] = handle
    return folder


def release_lock(folder: str | Path) -> None:
    """Let other processes use `folder` again (closing the file releases the flock)."""
    handle = _HELD.pop(Path(folder).resolve(), None)
    if handle is not None:
        handle.close()


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str):
    """`acquire_lock` for the duration of a block (released after, unless it was held before)."""
    held = Path(folder).resolve() in _HELD
    acquire_lock(folder, what)
    try:
        yield Path(folder)
    finally:
        if not held:
            release_lock(folder)


def _busy(folder: Path, what: str, lock: Path) -> PricerError:
    return PricerError(f"{folder} is in use for {what} by {_holder(lock)}: wait for it to finish, stop it, or "
                       "use another folder.")


def _alive_holder(lock: Path) -> bool:
    try:
        info = json.loads(lock.read_text())
    except (OSError, ValueError):
        return False
    if info.get("host") != socket.gethostname() or info.get("pid") == os.getpid():
        return False
    try:
        os.kill(int(info["pid"]), 0)
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False
