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


@contextlib.contextmanager
def hub_errors(name: str, write: bool = False):
    """Turn Hub failures (gated, no token, 401/403, no network) into a message with the fix."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    need = "a write token" if write else "a read token"
    embedded = "or run offline on the embedded model: preset 'tiny' or PRICER_OFFLINE=1"
    try:
        yield
    except GatedRepoError:
        raise PricerError(f"{name} is gated: accept its licence at https://huggingface.co/{name} with your "
                          f"account, then set HF_TOKEN to {need} (.env or Colab secrets); {embedded}.") from None
    except RepositoryNotFoundError:
        raise PricerError(f"{name} was not found on the Hub, or is private and HF_TOKEN can't see it: "
                          f"check the name and set HF_TOKEN to {need}; {embedded}.") from None
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None)
        if status == 401:
            raise PricerError(f"The Hub refused {name} (401): HF_TOKEN is missing or invalid. Create "
                              f"{need} at https://huggingface.co/settings/tokens; {embedded}.") from None
        if status == 403:
            raise PricerError(f"The Hub refused {name} (403): your token lacks permission. Use {need} "
                              f"(fine-grained tokens need that repo); {embedded}.") from None
        raise
    except (ConnectionError, OSError) as e:
        if "connect" not in str(e).lower() and "resolve" not in str(e).lower():
            raise
        raise PricerError(f"Could not reach the Hub for {name} (no network?); {embedded}.") from None
