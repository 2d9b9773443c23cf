"""The prompt format, exactly the course's, in one place.

    prompt = make_prompt(truncate(tokenizer, summary, 110))
    # "What does this cost to the nearest dollar?\n\n{summary}\n\nPrice is $"
    completion = make_completion(349.99, do_round=True)   # "350.00" (train / val)
    completion = make_completion(349.99, do_round=False)  # "349.99" (test: the exact truth)

Training on rounded prices gives the model one target per item; testing on the exact price
scores it against the truth.
"""

import math
import re

QUESTION = "What does this cost to the nearest dollar?"
PREFIX = "Price is $"
MIN_PRICE, MAX_PRICE = 0.5, 999.49  # the course's price window
PRICE = re.compile(r"\$?\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")


def truncate(tokenizer, text: str, max_tokens: int) -> str:
    """The text cut to at most `max_tokens` tokens, so every prompt fits the training length."""
    tokens = tokenizer.encode(text, add_special_tokens=False)
    if len(tokens) <= max_tokens:
        return text
    return tokenizer.decode(tokens[:max_tokens]).rstrip()


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
            raise ValueError(f"not a price: {value!r:.60}")
        value = float(match.group(1).replace(",", "") + (match.group(2) or ""))
    if not math.isfinite(value):
        raise ValueError(f"not a finite price: {value!r}")
    return float(value)
