"""The prompt format, exactly the course's, in one place.

    prompt = make_prompt(truncate(tokenizer, summary, 110))
    # "What does this cost to the nearest dollar?\n\n{summary}\n\nPrice is $"
    completion = make_completion(349.99, do_round=True)   # "350.00" (train / val)
    completion = make_completion(349.99, do_round=False)  # "349.99" (test: the exact truth)

Training on rounded prices gives the model one target per item; testing on the exact price
scores it against the truth.
"""

QUESTION = "What does this cost to the nearest dollar?"
PREFIX = "Price is $"


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
