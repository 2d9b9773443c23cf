"""Known student failures turned into one clear message that names the problem and the fix.

    with hub_errors("meta-llama/Llama-3.2-3B"):
        model = AutoModelForCausalLM.from_pretrained(...)   # a 401 becomes "set HF_TOKEN ..."
    require_bitsandbytes()                                  # says what to install, or which runtime

Each raises a `PricerError` (short message, no chained 40-line traceback) so a notebook shows
what to do instead of where the library gave up.
"""

import contextlib
import importlib.metadata

MIN_BNB_CPU = (0, 48)  # first bitsandbytes release with 4-bit and 8-bit on CPU


class PricerError(RuntimeError):
    """A failure with a known remedy; the message says what happened and what to do."""


class SettingError(PricerError, ValueError):
    """A setting (preset value, option, name) that can't be used: names it, its value and what is allowed."""


class DataError(PricerError, ValueError):
    """A row, file or dataset that can't be used, with where (file, line, row) and why in the message."""


class ResourceError(PricerError):
    """A folder, disk, device or service the work needs and can't have: names it, what is wrong and what to do."""


class SavedBug(RuntimeError):
    """A failure that is pricer's fault whose traceback is already saved (an executed notebook's error cell)."""

    def __init__(self, message: str, saved):
        super().__init__(message)
        self.saved = saved


def require_bitsandbytes() -> None:
    """Fail early, with the install or runtime to pick, where 4-bit / 8-bit can't run."""
    import torch

    try:
        version = importlib.metadata.version("bitsandbytes")
    except importlib.metadata.PackageNotFoundError:
        raise PricerError("4-bit and 8-bit loading need bitsandbytes: pip install 'bitsandbytes>=0.48' "
                          "(it runs on GPU, and on CPU from 0.48), or load with quant=None.") from None
    if not torch.cuda.is_available() and _version_tuple(version) < MIN_BNB_CPU:
        raise PricerError(f"bitsandbytes {version} needs a CUDA GPU ('CUDA is required'). On CPU install "
                          "bitsandbytes>=0.48; on Colab pick Runtime > Change runtime type > T4 GPU.")


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit())


def _chain(error: BaseException):
    """The error and its causes: transformers wraps the Hub's errors in plain OSErrors."""
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def _hub_problem(error: BaseException) -> str | None:
    """What went wrong with the Hub, if anything: gated, 401, 403, missing or offline."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    for e in _chain(error):
        text = str(e).lower()
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(e, GatedRepoError) or "gated repo" in text:
            return "gated"
        if status in (401, 403):
            return str(status)
        if isinstance(e, RepositoryNotFoundError) or "not a valid model identifier" in text:
            return "missing"
        if isinstance(e, (LocalEntryNotFoundError, ConnectionError)) or "couldn't connect" in text:
            return "offline"
    return None


@contextlib.contextmanager
def hub_errors(name: str, write: bool = False):
    """Turn Hub failures (gated, no token, 401/403, missing, no network) into a message with the fix."""
    need = "a write token" if write else "a read token"
    embedded = "or run offline on the embedded model: preset 'tiny' or PRICER_OFFLINE=1"
    fixes = {
        "gated": f"{name} is gated: accept its licence at https://huggingface.co/{name} with your account, "
                 f"then set HF_TOKEN to {need} (.env or Colab secrets); {embedded}.",
        "401": f"The Hub refused {name} (401): HF_TOKEN is missing or invalid. Create {need} at "
               f"https://huggingface.co/settings/tokens; {embedded}.",
        "403": f"The Hub refused {name} (403): your token lacks permission. Use {need} (a fine-grained "
               f"token must include that repo); {embedded}.",
        "missing": f"{name} is neither a local folder nor a repo on the Hub that HF_TOKEN can see: check "
                   f"the name, or set HF_TOKEN to {need} if it is private; {embedded}.",
        "offline": f"Could not reach the Hugging Face Hub for {name} (no network?); {embedded}.",
    }
    try:
        yield
    except (OSError, ValueError) as e:
        problem = _hub_problem(e)
        if problem is None:
            raise
        raise PricerError(fixes[problem]) from None
