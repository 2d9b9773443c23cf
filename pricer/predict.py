"""Price predictors for a causal LM: the course's two, and a batched probability-weighted one.

    from pricer.predict import PricePredictor, bind, improved_model_predict, model_predict
    evaluate(bind(model_predict, model, tokenizer), test)  # the course: generate 8 tokens, parse
    predictor = PricePredictor(model, tokenizer)           # batch_size picked from the device
    predictor(test[0])                                     # one price, a float
    predictor.predict_batch(test)                          # many: sorted by length, right-padded
    evaluate(predictor, test, size=len(test))              # the Tester calls predict_batch in chunks

`PricePredictor` reads the model's belief about the price instead of one greedy guess: the
answer is the expected value (or the median) of a distribution over whole-dollar prices.

Why whole prices and not next tokens: Llama-3 writes every number 0-999 as one token, so one
forward gives a distribution over prices and the course's `improved_model_predict` averages the
top few. Most other tokenizers (SmolLM2, Qwen, Mistral, Gemma) write `$349.99` as `$ 3 4 9 . 9 9`:
the next token is only the first digit, and averaging first digits predicts $3 for a $349 item.
The price is the whole digit string, so for those we expand the digit tree: the probability of
each first digit, then of each next digit or of the number ending (a "." or any non-digit), up to
`max_digits` digits. Every item's live prefixes run in one forward per depth: they are appended to
the item's own row after the prompt's KV cache, each attending to the prompt and to its own
ancestors (a tree attention mask), so the cache is never copied per prefix; the prompt's cache keeps
room for them (`roomy_cache`), so no depth copies it to grow it either. Prefixes that need another
forward are pruned depth by depth: each item keeps its most likely ones until they hold `coverage`
of its live probability (at most `top_k`; counted per item, so an answer never depends on its
batch); complete prices are never pruned. The pruned mass is dropped and the kept prices renormalised
(`PriceDistribution.kept_mass` says how much survived); `coverage=1.0` is exact. Why coverage
and not a fixed number of prefixes: a lightly tuned model spreads its belief widely, and greedy
generation favours the likeliest first digit (bench/README.md, "Evaluation", has the figures).

On a GPU the model's RMSNorm, SwiGLU and rotary embeddings are compiled into fused kernels
(`pricer.patches.transformers.fuse_kernels`, the model is changed in place; same math), compiled
for any batch length and tree width (dynamic shapes), so neither is padded for the compiler. The
Tester hands over `chunk_size` items at a time (8 batches on a GPU): sorted by length over all of
them, batches carry little padding, and each batch's answers are copied to the host behind it and
read only after the next one is queued, waiting for that batch alone, so the GPU never waits while
Python prepares a batch. The digit tree reads one number per pruned depth past the first (how many
prefixes go on); the first digit's ten children all go on, the pruned ones masked (bench/README.md).
"""

import contextlib
import hashlib
import math
from dataclasses import dataclass

from pricer.errors import PricerError
from pricer.prompts import PREFIX, prompt_of
from pricer.patches.torch import compiled
from pricer.patches.transformers import (fuse_kernels, hidden_states_at, roomy_cache, unpacked_rows,
                                         use_our_attention)

STATS = ("mean", "median")
CHUNK_BATCHES = 8  # on a GPU the Tester hands over this many batches at once: sorted over all, little padding
KEEP_UNREAD = 16  # a depth with at most this many children forwards them all rather than read how many to keep


@contextlib.contextmanager
def _eval_mode(model):
    """Dropout off while predicting (a model fresh from training is in train mode), then as it was."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def model_predict(item, model, tokenizer, max_new_tokens: int = 8) -> str:
    """The course's predictor: generate a few tokens greedily; the Tester's post_process reads the number."""
    import torch

    inputs = tokenizer(prompt_of(item), return_tensors="pt").to(model.device)
    with torch.inference_mode(), _eval_mode(model):
        output_ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(output_ids[0, inputs["input_ids"].shape[1]:])


def improved_model_predict(item, model, tokenizer, top_k: int = 3) -> float:
    """The course's one-forward predictor: top-k next tokens, weighted average of the numeric ones.

    Right only where each price is one token (Llama-3); 0.0 when none of the top k is a number."""
    import torch

    inputs = tokenizer(prompt_of(item), return_tensors="pt").to(model.device)
    with torch.inference_mode(), _eval_mode(model):
        logits = model(**inputs, logits_to_keep=1).logits[0, -1].float()
    top_prob, top_token_id = logits.softmax(-1).topk(top_k)
    prices, weights = [], []
    for probability, token_id in zip(top_prob.tolist(), top_token_id.tolist()):
        try:
            price = float(tokenizer.decode(token_id))
        except ValueError:
            continue
        if 0 < price < math.inf:  # "inf" and "nan" parse as floats too
            prices.append(price)
            weights.append(probability)
    if not prices:
        return 0.0
    return sum(p * w for p, w in zip(prices, weights)) / sum(weights)


def bind(fn, model, tokenizer, **kwargs):
    """`fn` with the model and tokenizer filled in: the one-argument predictor the Tester calls."""
    def predictor(datapoint):
        return fn(datapoint, model, tokenizer, **kwargs)

    predictor.__name__ = fn.__name__
    predictor.cache_key = f"{fn.__name__}:{sorted(kwargs.items())}:{model_fingerprint(model)}"
    return predictor


def model_fingerprint(model) -> str:
    """Base model name, revision, quantization and a digest of any LoRA weights: what an answer depends on."""
    import torch

    config = model.config
    quant = getattr(config, "quantization_config", None)
    quant = quant.to_dict() if hasattr(quant, "to_dict") else quant
    quant = {k: v for k, v in (quant or {}).items() if k.startswith(("load_in", "bnb_4bit_quant"))}
    lora = [p for name, p in model.named_parameters() if "lora_" in name]
    digest = "none"
    if lora:  # sums and squared sums: one small tensor to copy, and any training step changes them
        with torch.no_grad():
            stats = torch.stack([s for p in lora for s in (p.float().sum(), p.float().square().sum())])
        digest = hashlib.sha256(stats.cpu().numpy().tobytes()).hexdigest()[:16]
    name = getattr(model, "name_or_path", "") or config.name_or_path
    return f"{name}@{model_revision(name)}|{sorted(quant.items())}|lora:{digest}"


def model_revision(name: str) -> str | None:
    """The commit a Hub model's default branch had when it was last downloaded (what pricer loads); None for a
    folder, "unresolved" when the local cache doesn't say. transformers 5 no longer keeps it on the config."""
    import os

    from huggingface_hub import resolve_revision
    from huggingface_hub.errors import HFValidationError, RevisionResolutionError

    if not name or os.path.exists(name):
        return None
    try:
        return resolve_revision(name, local_files_only=True).resolved
    except (RevisionResolutionError, HFValidationError):  # not downloaded through the default cache, or not a repo id
        return "unresolved"


def default_batch_size(model, tree: bool = False) -> int:
    """On a GPU of 14 GB or more (a T4), 256 prompts (peak ~5 GB at 3B 4-bit), or 128 for the digit
    tree (~9 GB: each item's live prefixes ride along); 32 on smaller GPUs, 16 on CPU."""
    import torch

    device = model.device
    if device.type != "cuda":
        return 16  # measured: 2 CPU cores gain nothing past 16 (bench/README.md)
    if torch.cuda.get_device_properties(device).total_memory < 14e9:
        return 32
    return 128 if tree else 256


@dataclass(frozen=True)
class NumberTokens:
    """How a tokenizer writes the price after "Price is $": the tokens that start or extend it."""

    kind: str  # "whole": each number 0-999 is one token (Llama-3), read in one step; "digits": one per digit
    ids: list[int]
    values: list[int]


def number_tokens(tokenizer) -> NumberTokens:
    """Find, in the prompt's own context, whether numbers are whole tokens or digit sequences."""
    head = tokenizer.encode(PREFIX, add_special_tokens=False)

    def tail(text):
        ids = tokenizer.encode(PREFIX + text, add_special_tokens=False)
        return ids[len(head):] if ids[:len(head)] == head else None

    whole = [tail(str(n)) for n in range(1000)]
    if all(t is not None and len(t) == 1 for t in whole) and len({t[0] for t in whole}) == 1000:
        return NumberTokens("whole", [t[0] for t in whole], list(range(1000)))
    digits = whole[:10]
    if all(t is not None and len(t) == 1 for t in digits) and tail("349") == digits[3] + digits[4] + digits[9]:
        return NumberTokens("digits", [t[0] for t in digits], list(range(10)))
    raise PricerError(f"{type(tokenizer).__name__} writes '{PREFIX}349' as {tail('349')}: neither one token per "
                      "number (Llama-3) nor one per digit, so PricePredictor can't read prices from it; "
                      "use bind(model_predict, model, tokenizer) instead.")


@dataclass(frozen=True)
class PriceDistribution:
    """The model's belief about one item's price: whole-dollar prices and their probabilities."""

    prices: list[int]
    probs: list[float]  # renormalised over the prices kept: they sum to 1
    number_mass: float  # probability that the answer starts with a number at all
    kept_mass: float  # probability of the prices kept; number_mass - kept_mass was pruned

    @property
    def mean(self) -> float:
        return sum(p * q for p, q in zip(self.prices, self.probs))

    @property
    def median(self) -> float:
        cumulative = 0.0
        for price, prob in sorted(zip(self.prices, self.probs)):
            cumulative += prob
            if cumulative >= 0.5:
                return float(price)
        return float(max(self.prices))


class GenerationPredictor:
    """The course's `model_predict`, batched: greedy generation for many prompts in one `generate`."""

    def __init__(self, model, tokenizer, batch_size: int | None = None, max_new_tokens: int = 8,
                 name: str = "model_predict"):
        self.model, self.tokenizer, self.max_new_tokens = model, tokenizer, max_new_tokens
        self.batch_size = batch_size or default_batch_size(model)
        self.__name__ = name
        self.cache_key = f"model_predict:{max_new_tokens}:{model_fingerprint(model)}"

    def __call__(self, datapoint) -> str:
        return self.predict_batch([datapoint])[0]

    def predict_batch(self, datapoints) -> list[str]:
        """Each prompt's greedy answer text; left padding so every row generates from its own end."""
        import torch

        inputs = self.tokenizer([prompt_of(d) for d in datapoints], return_tensors="pt", padding=True,
                                padding_side="left").to(self.model.device)
        with torch.inference_mode(), _eval_mode(self.model):
            output_ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                             pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.batch_decode(output_ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


class PricePredictor:
    """Batched, probability-weighted prices: one forward per batch, plus one per digit for digit tokenizers."""

    def __init__(self, model, tokenizer, batch_size: int | None = None, stat: str = "mean",
                 coverage: float = 0.99, top_k: int | None = 128, max_digits: int = 3, name: str | None = None,
                 fused: bool | None = None):
        if stat not in STATS:
            raise ValueError(f"stat must be one of {STATS}, not {stat!r}")
        if not 0 < coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], the share of probability kept (got {coverage})")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be at least 1, or None for no cap (got {top_k})")
        if max_digits < 1:
            raise ValueError(f"max_digits must be at least 1 (got {max_digits})")
        self.model, self.tokenizer = model, tokenizer
        self.numbers = number_tokens(tokenizer)
        self.stat, self.coverage = stat, coverage
        self.top_k = top_k  # caps the forward's width: with 3 digits at most 90 prefixes are live
        self.max_digits = max_digits  # prices in the course's window (< $1000) have at most 3
        self.steps = 1 if self.numbers.kind == "whole" else max_digits
        self.batch_size = batch_size or default_batch_size(model, tree=self.steps > 1)
        on_gpu = model.device.type == "cuda"
        self.chunk_size = self.batch_size * (CHUNK_BATCHES if on_gpu else 1)  # what the Tester hands over at once
        self.fused = (on_gpu if fused is None else fused) and fuse_kernels(model)
        self._logp = compiled(_log_softmax_at, dynamic=None) if self.fused else None  # any batch and tree width
        if self.fused and self.steps > 1:  # the tree's masked attention without a copy of the cache per head
            use_our_attention(model)
        self._constants = {}  # device -> the number tokens' ids and values there (_on_device)
        self.__name__ = name or f"{'expected' if stat == 'mean' else 'median'}_price"
        self.cache_key = (f"PricePredictor:{self.numbers.kind}:{stat}:cover{coverage}:top{top_k}:"
                          f"digits{self.steps}:{'fused:' if self.fused else ''}{model_fingerprint(model)}")

    def __call__(self, datapoint) -> float:
        return self.predict_batch([datapoint])[0]

    def predict_batch(self, datapoints) -> list[float]:
        """One price per datapoint, in input order: the distribution's mean (or median), on the device."""
        return self._each_batch(datapoints, lambda *tree: (_summarise(*tree[:2], self.stat),), _tensor_to_list)

    def distributions(self, datapoints) -> list[PriceDistribution]:
        """Each datapoint's whole price distribution, to look at or plot."""
        return self._each_batch(datapoints, lambda *tree: tree, _distributions)

    def _each_batch(self, datapoints, on_device, to_host) -> list:
        """Batches sorted by length, so padding stays small; results back in input order. Each batch's
        answers (`on_device`: a tuple of tensors, queued on the GPU) are copied to the host behind it and read
        (`to_host`) once the next batch is queued: the read waits for this batch alone, so the GPU works on
        the next one while Python reads these answers and prepares the batch after."""
        from pricer.evaluator import tqdm  # tqdm.auto, imported without its no-ipywidgets warning

        rows = self.tokenizer([prompt_of(d) for d in datapoints])["input_ids"]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        chunks = [order[k:k + self.batch_size] for k in range(0, len(order), self.batch_size)]
        results, queued = [None] * len(rows), None

        def read(chunk, answers):
            tensors, done = answers
            if done is not None:
                done.synchronize()  # this batch's copies, not the work queued after them
            for i, result in zip(chunk, to_host(*tensors)):
                results[i] = result

        for chunk in tqdm(chunks, desc="pricing", disable=len(chunks) < 2):
            answers = _queued_to_host(on_device(*self._expand([rows[i] for i in chunk])))
            if queued:
                read(*queued)
            queued = chunk, answers
        if queued:
            read(*queued)
        return results

    def _expand(self, rows: list[list[int]]):
        """Each prompt's number tree: prices [B, N], their log-probabilities [B, N], number mass [B]."""
        import torch

        model, device = self.model, self.model.device
        num_ids, values = self._on_device(device)
        with torch.inference_mode(), _eval_mode(model):
            mask, out = self._prompt_forward(rows)
            logp = _number_logp(out.logits, num_ids, self._logp)  # [B, live=1, T]
            number_mass = logp[:, 0].logsumexp(-1).exp()
            B, lengths = len(rows), mask.sum(1)
            live_lp = torch.zeros((B, 1), device=device)
            live_value = torch.zeros((B, 1), dtype=torch.long, device=device)
            ancestors = torch.zeros((B, 1, 0), dtype=torch.bool, device=device)
            leaf_values, leaf_lps = [], []
            for step in range(1, self.steps + 1):
                last = step == self.steps  # complete prices cost nothing: prune only what needs a forward
                live_lp, pick = self._prune((live_lp.unsqueeze(-1) + logp).flatten(1), prune=not last)
                parent, token = pick // len(num_ids), pick % len(num_ids)
                live_value = live_value.gather(1, parent) * 10 + values[token]
                ends = torch.full_like(live_value, last, dtype=torch.bool)
                ends |= live_value == 0  # deepest allowed, or a leading 0: "05" is no way to write $5
                leaf_values.append(live_value)
                leaf_lps.append(live_lp.masked_fill(~ends, -math.inf))
                if last:
                    break
                live_lp = live_lp.masked_fill(ends, -math.inf)
                ancestors = self._tree_ancestors(ancestors, parent)
                out = model(input_ids=num_ids[token], attention_mask=self._tree_mask(mask, ancestors),
                            position_ids=(lengths + step - 1).unsqueeze(1).expand_as(token),
                            past_key_values=out.past_key_values, use_cache=True)
                logp = _number_logp(out.logits, num_ids, self._logp)  # [B, live, T]
                more = logp.logsumexp(-1).clamp(max=0)  # log P(another digit | prefix)
                leaf_values.append(live_value)
                leaf_lps.append(live_lp + torch.log(-torch.expm1(more)))  # the number ends after the prefix
        return torch.cat(leaf_values, 1), torch.cat(leaf_lps, 1), number_mass

    def _on_device(self, device):
        """The number tokens' ids and values as tensors on `device`, made once (each a wait for the GPU to make)."""
        import torch

        if device not in self._constants:
            self._constants[device] = (torch.tensor(self.numbers.ids, device=device),
                                       torch.tensor(self.numbers.values, device=device))
        return self._constants[device]

    def _prune(self, children, prune: bool):
        """The best children of each item, [B, k]: as many as hold `coverage` of its probability (at
        most top_k), counted per item so the answer never depends on which items share the batch."""
        import torch

        if not prune:
            return children.sort(-1, descending=True)
        probs, n = children.softmax(-1).sort(-1, descending=True).values, children.shape[1]
        cap = min(self.top_k or n, n)
        need = ((probs.cumsum(-1) < self.coverage).sum(-1) + 1).clamp(max=cap)
        # the first digit's few children all go on, the pruned ones masked: reading the width would wait for the GPU
        lp, pick = children.topk(cap if n <= KEEP_UNREAD else int(need.max()), dim=1)
        return lp.masked_fill(torch.arange(lp.shape[1], device=lp.device) >= need[:, None], -math.inf), pick

    def _prompt_forward(self, rows):
        """One forward over the right-padded prompts, without an attention mask: causal attention already keeps
        each prompt's tokens from the padding after them, positions count from 0 as unpadded, and attention
        runs its causal kernel. Each row's last token is picked by index on the way to the head. Rows go to
        the GPU from pinned memory, nothing is read back: the GPU never waits for Python here."""
        import torch

        B, L, pad = len(rows), max(map(len, rows)), self.tokenizer.pad_token_id or 0
        device = self.model.device
        pinned = device.type == "cuda"
        ids = torch.tensor([row + [pad] * (L - len(row)) for row in rows])
        mask = torch.tensor([[1] * len(row) + [0] * (L - len(row)) for row in rows])
        last = torch.tensor([b * L + len(row) - 1 for b, row in enumerate(rows)])
        ids, mask, last = (t.pin_memory().to(device, non_blocking=True) if pinned else t.to(device)
                           for t in (ids, mask, last))
        cache = roomy_cache(self._tree_tokens()) if self.steps > 1 and _full_attention_only(self.model) else None
        with hidden_states_at(self.model, last, (B, 1)), unpacked_rows():
            out = self.model(input_ids=ids, past_key_values=cache, use_cache=self.steps > 1, logits_to_keep=1)
        return mask, out

    def _tree_tokens(self) -> int:
        """The most prefixes an item's tree appends to its cache: the first digit's children, then at most
        top_k (and ten per parent) at each later depth that needs a forward."""
        width = total = min(self.top_k or len(self.numbers.ids), len(self.numbers.ids))
        for _ in range(self.steps - 2):
            width = min(self.top_k or math.inf, width * len(self.numbers.ids))
            total += width
        return total

    @staticmethod
    def _tree_ancestors(ancestors, parent):
        """[B, live, tree columns]: which appended tree tokens each new prefix descends from, itself included."""
        import torch

        B, k = parent.shape
        inherited = ancestors.gather(1, parent.unsqueeze(-1).expand(B, k, ancestors.shape[-1]))
        own = torch.eye(k, dtype=torch.bool, device=parent.device).expand(B, k, k)
        return torch.cat([inherited, own], -1)

    def _tree_mask(self, mask, ancestors):
        """Additive 4D mask: each prefix's new token sees the prompt (not its padding) and its own ancestors."""
        import torch

        B, k, _ = ancestors.shape
        allowed = torch.cat([mask.bool().unsqueeze(1).expand(B, k, mask.shape[1]), ancestors], -1)
        dtype = self.model.get_input_embeddings().weight.dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=mask.device).masked_fill(
            ~allowed, torch.finfo(dtype).min).unsqueeze(1)


def _full_attention_only(model) -> bool:
    """No sliding-window layers (Gemma's, Mistral's): the roomy cache's layers are all full-attention ones."""
    config = model.config.get_text_config()
    return set(getattr(config, "layer_types", None) or ["full_attention"]) == {"full_attention"} and not getattr(
        config, "sliding_window", None)


def _tensor_to_list(tensor) -> list:
    return tensor.tolist()


def _queued_to_host(tensors: tuple):
    """Host copies of a batch's answers, queued behind the work that makes them, and the event that marks them
    done (None off a GPU). `.tolist()` on a GPU tensor would wait for everything queued, the next batch too."""
    import torch

    if not tensors[0].is_cuda:
        return tensors, None
    host = tuple(torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True) for t in tensors)
    done = torch.cuda.Event()
    done.record()
    return host, done


def _number_logp(logits, num_ids, fused=None):
    """log P(each number token), normalised over the whole vocabulary in fp32: with `fused` (_log_softmax_at
    compiled), one kernel that reads the logits once, no fp32 copy; else a few rows at a time, since a float copy
    of all the tree's logits would be ~6 GB at batch 128 with a 128k vocabulary."""
    import torch

    if fused is not None:
        return fused(logits, num_ids)
    return torch.cat([rows.float().log_softmax(-1)[..., num_ids] for rows in logits.split(8)])


def _log_softmax_at(logits, ids):
    return logits[..., ids].float() - logits.float().logsumexp(-1, keepdim=True)


def _summarise(values, lps, stat: str):
    """Mean or median of each row's distribution, [B], without leaving the device."""
    probs = lps.softmax(-1).double()
    if stat == "mean":
        return (probs * values).sum(-1)
    sorted_values, order = values.sort(-1)
    below = (probs.gather(-1, order).cumsum(-1) < 0.5).sum(-1, keepdim=True)  # the median is the next price
    return sorted_values.gather(-1, below.clamp(max=values.shape[-1] - 1)).squeeze(-1).double()


def _distributions(values, lps, number_mass) -> list[PriceDistribution]:
    kept = lps.logsumexp(-1).exp()
    out = []
    for v, p, n, k in zip(values.tolist(), lps.softmax(-1).double().tolist(), number_mass.tolist(), kept.tolist()):
        keep = [i for i, q in enumerate(p) if q > 0]
        out.append(PriceDistribution([v[i] for i in keep], [p[i] for i in keep], n, k))
    return out
