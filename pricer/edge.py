"""One edge for errors: what a user can fix becomes one or two named lines; anything else is called a bug.

    code = run_at_edge(lambda: command(args), debug=args.debug)   # the CLI: exit 2 (yours), 1 (ours); PRICER_DEBUG=1 too
    with user_errors(): ...          # a notebook's setup: the same messages, as a short PricerError

`explain` is the one place that knows which failures a user causes and what to do about them:
our own `PricerError`s, the operating system's (a full or read-only disk, a file where a folder
belongs, a name too long), a full disk met by torch while it saves a checkpoint (its
`inline_container.cc ... unexpected pos`), a Hub name the Hub's own validation refuses, text
that is not UTF-8, a `raise ValueError` of pricer's own checks, and Ctrl-C. Anything else is
pricer's fault: its traceback is saved, redacted, and the message says where. All of it passes
through `pricer.env.redact`, `--debug` output included.
"""

import contextlib
import linecache
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from pricer.errors import PricerError, SavedBug

PACKAGE = Path(__file__).resolve().parent
DISK_FULL = ("unexpected pos", "PytorchStreamWriter failed", "file write failed", "No space left on device")
USER = 2  # exit code of a failure the user can fix (as argparse's)
BUG = 1
INTERRUPTED = 130


def explain(error: BaseException) -> str | None:
    """What went wrong and what to do, for a failure a user can cause; None for a bug in pricer."""
    from pricer.files import os_problem

    if isinstance(error, PricerError):
        return str(error)
    if isinstance(error, KeyboardInterrupt):
        return "interrupted: rerun the same command to go on (training resumes from its last checkpoint)"
    if isinstance(error, OSError):
        return os_problem(error, None if error.filename else _file_in(error))
    if isinstance(error, MemoryError):
        return ("out of memory (RAM): use fewer rows (--set train_rows=...), a smaller --micro-batch, or a machine "
                "with more memory")
    text = str(error)
    if isinstance(error, RuntimeError) and any(words in text for words in DISK_FULL):
        return (f"writing a file stopped part-way ({text.strip().splitlines()[0][-80:]}): the disk is full. Free "
                "space where the run folder is (or choose another --output-dir on another disk) and rerun the same "
                "command: it resumes from the last whole checkpoint")
    if type(error).__name__ == "OutOfMemoryError":
        return ("out of GPU memory: rerun with a smaller --micro-batch (add --checkpointing), or fewer rows; "
                "training resumes from its last checkpoint")
    if type(error).__name__ == "HFValidationError":
        return (f"not a valid Hugging Face Hub name: {text} Use owner/name with letters, digits, '-', '_' or '.' "
                "(e.g. --push me/pricer-lite)")
    if isinstance(error, UnicodeDecodeError):
        where = _file_in(error)
        return (f"{where or 'a file'}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8 "
                "(in Excel: 'CSV UTF-8')")
    if isinstance(error, ValueError) and _raised_by_pricer(error):
        return text
    return None


def _raised_by_pricer(error: BaseException) -> bool:
    """True for an error raised on purpose by pricer's own checks: a `raise` line in a pricer module."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return False
    last = frames[-1]
    inside = Path(last.filename).resolve().is_relative_to(PACKAGE)
    return inside and linecache.getline(last.filename, last.lineno).strip().startswith("raise")


def _file_in(error: BaseException) -> str | None:
    """The file being read where a decoding error happened, from the innermost frames' local names."""
    tb, found = error.__traceback__, None
    while tb is not None:
        for name in ("path", "filename", "file", "dotenv_path", "f"):
            value = tb.tb_frame.f_locals.get(name)
            if isinstance(value, (str, Path)) and value and len(str(value)) < 1000:
                found = str(value)
            elif hasattr(value, "name") and isinstance(getattr(value, "name"), str):
                found = value.name
        tb = tb.tb_next
    return found


@contextlib.contextmanager
def user_errors():
    """Failures a user can fix (see `explain`) become a PricerError with the message and no long traceback."""
    try:
        yield
    except PricerError:
        raise
    except Exception as e:
        message = explain(e)
        if message is None:
            raise
        from pricer.env import redact

        raise PricerError(redact(message)) from None


def save_traceback(error: BaseException) -> Path | None:
    """The error's traceback, redacted, in a file the user can send (PRICER_HOME/errors, else the temp folder)."""
    from pricer.config import pricer_home
    from pricer.env import redact

    text = redact("".join(traceback.format_exception(error)))
    name = f"error-{time.strftime('%Y-%m-%d_%H.%M.%S')}-{os.getpid()}.txt"
    for folder in (pricer_home() / "errors", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
            return folder / name
        except OSError:
            continue
    return None


def report(error: BaseException, debug: bool = False, out=None) -> int:
    """Print the error as the edge does (redacted) and return the exit code: 2 yours, 1 ours, 130 Ctrl-C."""
    from pricer.env import redact

    out = out or sys.stderr
    if debug:
        print(redact("".join(traceback.format_exception(error))), file=out, end="")
    message = explain(error)
    if message is not None:
        print(f"pricer: error: {redact(message)}", file=out)
        if not debug and not isinstance(error, KeyboardInterrupt):
            print("pricer: (--debug or PRICER_DEBUG=1 shows the traceback)", file=out)
        return INTERRUPTED if isinstance(error, KeyboardInterrupt) else USER
    saved = error.saved if isinstance(error, SavedBug) else save_traceback(error)
    what = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    print(redact(f"pricer: bug: {type(error).__name__}{': ' + what if what else ''}"), file=out)
    where = f"the traceback is saved in {saved}" if saved else "the traceback could not be saved (--debug shows it)"
    print(f"pricer: this is a bug in pricer, not something you did; {where}. Please report it.", file=out)
    return BUG


def run_at_edge(job, debug: bool = False) -> int:
    """Run `job()` with every line it prints redacted; the exit code, after `report` for any failure.
    `debug` (or PRICER_DEBUG=1) shows a failure's traceback, redacted too."""
    from pricer.config import flag
    from pricer.env import redacted_output

    debug = debug or flag("PRICER_DEBUG")

    with redacted_output():
        try:
            job()
            return 0
        except SystemExit as e:  # argparse, a relaunch's status: as they are
            return e.code if isinstance(e.code, int) else (print(e.code, file=sys.stderr) or USER)
        except BaseException as e:  # noqa: BLE001: the edge is where every failure is judged
            return report(e, debug)
