"""The prompt format, exactly the course's, and how a datapoint is read, in one place.

    prompt = make_prompt(truncate(tokenizer, summary, 110))
    # "What does this cost to the nearest dollar?\n\n{summary}\n\nPrice is $"
    completion = make_completion(349.99, do_round=True)   # "350.00" (train / val)
    completion = make_completion(349.99, do_round=False)  # "349.99" (test: the exact truth)

Training on rounded prices gives the model one target per item; testing on the exact price
scores it against the truth.

A datapoint is an Item (or anything with `.summary` / `.title` / `.prompt`) or a prompt row
{"prompt", "completion"}. `text_of` (the product text), `title_of` and `prompt_of` read either,
so the baselines, the frontier models and the human baseline see the same text.
"""

import math
import re
from collections.abc import Mapping

QUESTION = "What does this cost to the nearest dollar?"
PREFIX = "Price is $"
MIN_PRICE, MAX_PRICE = 0.5, 999.49  # the course's price window
PRICE = re.compile(r"\$?\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")
PARTIAL = "\ufffd"  # what a tokenizer decodes the first bytes of a multi-byte character to


def truncate(tokenizer, text: str, max_tokens: int) -> str:
    """The text cut to at most `max_tokens` tokens, so every prompt fits the training length.

    A cut can fall inside a character that spans several tokens (U+202F, an emoji, a math letter:
    byte-level tokenizers split their UTF-8 bytes), and its decoded prefix then ends in U+FFFD:
    the cut backs off to the last whole character instead."""
    tokens = tokenizer.encode(text, add_special_tokens=False)
    if len(tokens) <= max_tokens:
        return text
    whole = tokenizer.decode(tokens)
    for end in range(max_tokens, 0, -1):
        cut = tokenizer.decode(tokens[:end])
        if not cut.endswith(PARTIAL) or whole.startswith(cut):  # a U+FFFD the text itself has stays
            return cut.rstrip()
    return ""


def make_prompt(summary: str) -> str:
    """The question, the product summary, and the answer's opening words."""
    return f"{QUESTION}\n\n{summary}\n\n{PREFIX}"


def make_completion(price: float, do_round: bool) -> str:
    """What the model should say after the prompt: rounded dollars for training, exact for test."""
    return f"{round(price)}.00" if do_round else str(price)


def datapoint(tokenizer, summary: str, price: float, max_tokens: int, do_round: bool) -> dict:
    """The {"prompt", "completion"} row for one product: what `Item.make_prompts` sets, for plain rows."""
    return {"prompt": make_prompt(truncate(tokenizer, summary, max_tokens)), "completion": make_completion(price, do_round)}


def read_price(value) -> float:
    """A price as data files write it: 64.3, "64.30", "$64.30" or "$1,299.00"; ValueError for anything else.

    Strict, unlike the Tester's reading of a model's free-text answer: the whole value must be one price."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"not a price: {value!r:.60}")
    if isinstance(value, str):
        match = PRICE.fullmatch(value.strip())
        if not match:
            comma = re.fullmatch(r"\$?\s*\d+,\d{1,2}", value.strip())  # a decimal comma: 12,99 is not 1299
            raise ValueError(f"not a price: {value!r:.60}{' (write it with a decimal point: 12.99)' if comma else ''}")
        value = float(match.group(1).replace(",", "") + (match.group(2) or ""))
    if not math.isfinite(value):
        raise ValueError(f"not a finite price: {value!r}")
    return float(value)


def _field(datapoint, name: str):
    return datapoint.get(name) if isinstance(datapoint, Mapping) else getattr(datapoint, name, None)


def text_of(datapoint) -> str:
    """The product text: an Item's summary (else its title), or the summary inside a prompt row."""
    if isinstance(datapoint, Mapping):
        prompt = datapoint.get("prompt")
        if not isinstance(prompt, str):
            raise ValueError(f"a prompt row needs a 'prompt' string, got keys {sorted(datapoint)}")
        return prompt.removeprefix(QUESTION).removesuffix(PREFIX).strip()
    text = _field(datapoint, "summary") or _field(datapoint, "title")
    if not text:
        raise ValueError(f"{datapoint!r:.80} has neither a summary nor a title to read")
    return text.strip()


def title_in(text: str) -> str:
    """A product text's 'Title:' line (the course's summaries start with one), else its first line."""
    match = re.search(r"^Title:\s*(.+)$", text, re.M)
    return (match.group(1) if match else (text.strip().splitlines() or [""])[0]).strip()


def title_of(datapoint) -> str:
    """The product title: an Item's title, or the 'Title:' line of a prompt row's text."""
    title = None if isinstance(datapoint, Mapping) else _field(datapoint, "title")
    return title.strip() if title else title_in(text_of(datapoint))


def prompt_of(datapoint) -> str:
    """The prompt of a {"prompt"} row, an Item (its prompt, else one made from its summary) or a str."""
    if isinstance(datapoint, str):
        return datapoint
    if _field(datapoint, "prompt"):
        return _field(datapoint, "prompt")
    if _field(datapoint, "summary"):
        return make_prompt(_field(datapoint, "summary"))
    raise ValueError(f"{datapoint!r:.80} has no prompt or summary to predict a price from")
