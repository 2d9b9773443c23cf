"""Frontier models as price predictors, only when an API key is set; skipped with one line otherwise.

    predictor = frontier_predictor("gpt-4.1-nano")        # OPENAI_API_KEY
    predictor = frontier_predictor("claude-sonnet-4-5")   # ANTHROPIC_API_KEY (its OpenAI-style API)
    if predictor:                                          # None, and one printed line, when there is
        evaluate(predictor, test)                          # no key or the API can't be reached

Plain HTTPS (urllib) to an OpenAI-compatible /chat/completions endpoint, so no client library
is needed; `base_url` (or OPENAI_BASE_URL) points it at another compatible server. The key is
read at each call (`pricer.env.secret`: the environment, .env or Colab secrets, whitespace
stripped; os.environ is not changed) and is never stored on the predictor, printed, or put in an
error message: errors name the variable, never quote the request, and pass through `redact`.
The prompt is the course's week-6 frontier prompt; answers are parsed to dollars, or None (the
Tester counts those as unparsed). A refused key or an API that keeps failing raises PricerError
with the reason; a predictor also carries a `cache_key`, so a rerun only pays for what is missing.
"""

import http.client
import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from pricer.env import redact, secret
from pricer.errors import PricerError
from pricer.evaluator import parse_price  # the one reader of written prices (also the Tester's)
from pricer.prompts import text_of

PROMPT = "Estimate the price of this product. Respond with the price, no explanation\n\n{summary}"
OPENAI = ("OPENAI_API_KEY", "https://api.openai.com/v1")
ANTHROPIC = ("ANTHROPIC_API_KEY", "https://api.anthropic.com/v1")  # its OpenAI SDK compatibility layer
RETRIES = 3  # rate limits and 5xx pass within a few seconds; a fourth failure is not transient
TIMEOUT = 60  # seconds for one answer: reasoning models can think for a while
# A credential an API echoes back in its error message (whoever's it is), with its header name
CREDENTIAL = re.compile(r"(?:authorization['\"]?\s*[:=]\s*['\"]?)?bearer\b(?:\s+[^\s'\",;]+)?"
                        r"|authorization['\"]?\s*[:=]\s*['\"]?(?:\w+\s+)?[^\s'\",;]*", re.I)


def provider(model: str) -> tuple[str, str]:
    """(key variable, base URL) for a model: Claude models go to Anthropic, the rest to OpenAI."""
    if model.lower().startswith("claude"):
        return ANTHROPIC
    return OPENAI[0], os.environ.get("OPENAI_BASE_URL") or OPENAI[1]


def reachable(base_url: str, timeout: float = 3.0) -> bool:
    """True when the API's host accepts a connection: a quick offline check before any spending."""
    url = urllib.parse.urlsplit(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


class FrontierPredictor:
    """Asks a chat model for each datapoint's price; `predict_batch` asks several at once."""

    batch_size = 8  # requests in flight together: 200 items in about a minute, under rate limits

    def __init__(self, model: str, base_url: str, key_env: str):
        self.model, self.base_url, self.key_env = model, base_url.rstrip("/"), key_env
        self.__name__ = re.sub(r"[^a-z0-9_]", "_", model.lower().replace(".", "__"))  # Tester: "GPT 4.1 Nano"
        self.cache_key = f"frontier:{self.base_url}:{model}"  # resume: a rerun only pays for new items

    def __repr__(self) -> str:
        return f"<FrontierPredictor {self.model} at {self.base_url}>"

    def messages(self, datapoint) -> list[dict]:
        """The course's week-6 frontier prompt for this product."""
        return [{"role": "user", "content": PROMPT.format(summary=text_of(datapoint))}]

    def __call__(self, datapoint) -> float | None:
        return parse_price(self.complete(self.messages(datapoint)))

    def predict_batch(self, datapoints) -> list[float | None]:
        """Prices for several datapoints, asked concurrently, in order."""
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            return list(pool.map(self, datapoints))

    def complete(self, messages: list[dict]) -> str:
        """The model's answer text, retrying rate limits and server errors; PricerError otherwise.

        No message quotes the request or an exception's text from building or sending it: those
        can hold the Authorization header (http.client's "Invalid header value b'Bearer sk-...'")."""
        body = json.dumps({"model": self.model, "messages": messages}).encode()
        request = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self._key()}"})
        for attempt in range(RETRIES + 1):
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                    return self._content(response.read())
            except urllib.error.HTTPError as e:
                if e.code in (401, 403):
                    raise self._error(f"the API refused the key in {self.key_env} ({e.code})") from None
                if not (e.code == 429 or e.code >= 500) or attempt == RETRIES:  # lasting, or out of tries
                    raise self._error(f"HTTP {e.code}: {_reason(e)}") from None
            except (urllib.error.URLError, OSError) as e:  # no route, refused, timed out, TLS
                if attempt == RETRIES:
                    reason = getattr(e, "reason", None) or e.strerror or type(e).__name__
                    raise self._error(f"could not reach {self.base_url} ({reason})") from None
            except (ValueError, http.client.HTTPException) as e:  # their messages may quote a header
                raise self._error(f"the request failed ({type(e).__name__}); check {self.base_url} "
                                  f"and {self.key_env}") from None
            time.sleep(2 ** attempt)

    def _key(self) -> str:
        """The API key, read now (never kept on the predictor); refused by name if a header can't carry it."""
        key = secret(self.key_env)
        if key is None:
            raise self._error(f"{self.key_env} is not set (add it to .env or Colab secrets)")
        if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
            raise self._error(f"{self.key_env} has a space, line break or non-ASCII character inside it, "
                              "which no API key has: copy the key again")
        return key

    def _content(self, answer: bytes) -> str:
        """The answer's text; a PricerError naming what is missing (never the answer or the request)."""
        try:
            content = json.loads(answer)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise self._error(f"unexpected answer format: no choices[0].message.content ({type(e).__name__})") from None
        if content is not None and not isinstance(content, str):
            raise self._error(f"unexpected answer format: content is a {type(content).__name__}, not text")
        return content or ""

    def _error(self, message: str) -> PricerError:
        return PricerError(CREDENTIAL.sub("<credentials hidden>", redact(f"{self.model}: {message}")))


def _reason(error: urllib.error.HTTPError) -> str:
    """The API's error type and its own message, short (it says e.g. which model name is unknown); never the
    body or headers as sent: an API may echo the key in them, in any encoding (`_error` redacts what is kept)."""
    try:
        problem = json.loads(error.read())["error"]
        kind = problem.get("type") or problem.get("code") if isinstance(problem, dict) else None
        message = problem.get("message") if isinstance(problem, dict) else problem
        return f"{kind + ': ' if isinstance(kind, str) else ''}{str(message)[:200]}"
    except Exception:  # not JSON, or not the usual shape: the status line will do
        return str(error.reason)[:100]


def frontier_predictor(model: str = "gpt-4.1-nano", base_url: str | None = None,
                       key_env: str | None = None, check: bool = True) -> FrontierPredictor | None:
    """A predictor for `model`, or None and one line saying why (no key, or API unreachable)."""
    default_env, default_url = provider(model)
    key_env, base_url = key_env or default_env, base_url or default_url
    if secret(key_env) is None:
        print(f"pricer: skipping {model} (no {key_env} set)")
        return None
    if check and not reachable(base_url):
        print(f"pricer: skipping {model} ({urllib.parse.urlsplit(base_url).netloc} unreachable: offline?)")
        return None
    return FrontierPredictor(model, base_url, key_env)


def frontier_predictors(models=("gpt-4.1-nano", "claude-sonnet-4-5")) -> dict[str, FrontierPredictor]:
    """Those of `models` that can run here, by name; each skipped one says why in one line."""
    found = {model: frontier_predictor(model) for model in models}
    return {model: p for model, p in found.items() if p is not None}

