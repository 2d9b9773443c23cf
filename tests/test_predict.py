"""pricer.predict: the course's predictors, and the batched probability-weighted PricePredictor.

Tiny random Llamas (seeded, built here in well under a second) check the arithmetic against
brute force; the embedded SmolLM2 checks batching on a real model and tokenizer.
"""

import itertools
import math
import sys
from pathlib import Path

import pytest
import torch

from pricer.errors import PricerError
from pricer import evaluator
from pricer.evaluator import evaluate
from pricer.items import Item
from pricer.predict import (PricePredictor, bind, improved_model_predict, model_predict, number_tokens,
                            prompt_of)
from pricer.prompts import make_prompt

sys.path.insert(0, str(Path(__file__).parent))
from device_reads import device_reads  # noqa: E402


SUMMARY = ("Title: Brevant 4300Pa Suction Robot Vacuum, Brushed copper\nCategory: Appliances\n"
           "Brand: Brevant\nDescription: A 4300Pa suction robot vacuum made of brushed copper")
PROMPTS = [  # very different lengths, deliberately not in length order
    make_prompt(SUMMARY),
    make_prompt("A pen"),
    make_prompt(f"{SUMMARY}\n{SUMMARY}"),
    make_prompt("Title: Garden hose, 50 ft\nCategory: Garden"),
]


@pytest.fixture(autouse=True)
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PRICER_RESULTS", str(tmp_path / "results"))


@pytest.fixture(scope="module")
def embedded():
    from pricer.models import load_model, load_tokenizer

    return load_model("embedded", quant=None), load_tokenizer("embedded")  # right padding, as for training


@pytest.fixture(scope="module")
def digit_tokenizer():
    from pricer.models import load_tokenizer

    return load_tokenizer("embedded")


def tiny_llama(tokenizer, numbers, seed=0):
    """A random 2-layer Llama whose next token is often one of `numbers` or ".", depending on context.

    Plain random weights spread the probability over the whole vocabulary, so a number would almost
    always end after its first digit; a constant embedding feature plus large number rows in the
    output layer give digits, "." and everything else comparable, context-dependent odds."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.5, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    favoured = list(numbers) + [tokenizer.convert_tokens_to_ids(".")]
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 4.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[favoured] = torch.randn(len(favoured), 32) * 0.7
        model.lm_head.weight[favoured, 0] = 3.0
    return model


def next_token_logp(model, sequences):
    """Log-probabilities after each whole sequence, by plain unpadded forwards: the reference."""
    out = [None] * len(sequences)
    for n in {len(s) for s in sequences}:  # equal lengths batch without any padding
        index = [i for i, s in enumerate(sequences) if len(s) == n]
        with torch.no_grad():
            logp = model(torch.tensor([sequences[i] for i in index]), logits_to_keep=1).logits[:, -1].log_softmax(-1)
        for i, row in zip(index, logp):
            out[i] = row
    return out


def brute_force(model, tokenizer, prompt, max_digits):
    """Every digit string up to max_digits with its exact probability, renormalised: {price: prob}."""
    digits = number_tokens(tokenizer).ids
    head = tokenizer(prompt)["input_ids"]
    strings = [(0,)] + [p for n in range(1, max_digits + 1) for p in itertools.product(range(10), repeat=n)
                        if p[0] != 0]  # "0" is $0 and ends there; no price starts with another 0
    prefixes = [()] + [p for p in strings if len(p) < max_digits and p != (0,)]
    logp = dict(zip(prefixes, next_token_logp(model, [head + [digits[d] for d in p] for p in prefixes])))
    leaves = {}
    for p in strings:
        path = sum(logp[p[:i]][digits[p[i]]].item() for i in range(len(p)))
        ends = p == (0,) or len(p) == max_digits
        leaves[int("".join(map(str, p)))] = math.exp(path) * (1.0 if ends else 1 - logp[p][digits].exp().sum().item())
    total = sum(leaves.values())
    return {price: q / total for price, q in leaves.items()}


def weighted_median(dist):
    cumulative = 0.0
    for price, prob in sorted(dist.items()):
        cumulative += prob
        if cumulative >= 0.5:
            return price


def count_forwards(model):
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    return calls


# ----- how prices are written -----

def test_number_tokens_tells_digit_from_whole_number_tokenizers(digit_tokenizer, llama_tokenizer):
    digits = number_tokens(digit_tokenizer)
    assert digits.kind == "digits"
    assert [digit_tokenizer.decode(i) for i in digits.ids] == [str(d) for d in range(10)]
    whole_tok = llama_tokenizer  # the real Llama 3.2 tokenizer: every number 0-999 is one token
    whole = number_tokens(whole_tok)
    assert whole.kind == "whole" and len(whole.ids) == 1000
    assert [whole_tok.decode(whole.ids[n]) for n in (0, 7, 42, 349, 999)] == ["0", "7", "42", "349", "999"]


def test_a_tokenizer_that_writes_numbers_neither_way_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", "Price", "is", "$", "</s>"])}
    words = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # "$349" is one unknown word
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", eos_token="</s>")
    with pytest.raises(PricerError, match="model_predict"):
        number_tokens(tokenizer)


# ----- the arithmetic, against brute force -----

def test_digit_tree_matches_brute_force_enumeration(digit_tokenizer):
    model = tiny_llama(digit_tokenizer, number_tokens(digit_tokenizer).ids)
    predictor = PricePredictor(model, digit_tokenizer, batch_size=8, coverage=1.0, top_k=None, max_digits=3)
    prompts = PROMPTS[:3]
    dists = predictor.distributions(prompts)
    assert predictor.predict_batch(prompts) == pytest.approx([d.mean for d in dists], rel=1e-9)
    predictor.stat = "median"
    assert predictor.predict_batch(prompts) == [d.median for d in dists]
    loose_cap = PricePredictor(model, digit_tokenizer, coverage=1.0, top_k=1000).predict_batch(prompts)
    assert loose_cap == pytest.approx([d.mean for d in dists], rel=1e-6)  # a cap above 10 or 90 prunes nothing
    for prompt, dist in zip(prompts, dists):
        exact = brute_force(model, digit_tokenizer, prompt, max_digits=3)
        by_digits = [sum(q for p, q in exact.items() if len(str(p)) == n) for n in (1, 2, 3)]
        assert min(by_digits) > 0.01, f"the case must exercise ending after 1, 2 and 3 digits: {by_digits}"
        mean = sum(p * q for p, q in exact.items())
        assert dist.mean == pytest.approx(mean, rel=1e-5)
        assert dist.median == weighted_median(exact)
        got = dict(zip(dist.prices, dist.probs))
        assert max(abs(got.get(p, 0.0) - q) for p, q in exact.items()) < 1e-6


def test_pruning_keeps_exact_probabilities_of_the_prices_it_keeps(digit_tokenizer):
    model = tiny_llama(digit_tokenizer, number_tokens(digit_tokenizer).ids)
    exact, capped, covered = (PricePredictor(model, digit_tokenizer, coverage=c, top_k=k).distributions(PROMPTS[:2])
                              for c, k in ((1.0, None), (1.0, 4), (0.8, None)))
    for full, *pruned in zip(exact, capped, covered):
        reference = dict(zip(full.prices, full.probs))
        assert full.kept_mass == pytest.approx(full.number_mass, rel=1e-5)
        for cut in pruned:
            assert cut.kept_mass < full.kept_mass and len(cut.prices) < len(full.prices)
            kept_share = sum(reference[p] for p in cut.prices)
            for price, prob in zip(cut.prices, cut.probs):
                assert prob == pytest.approx(reference[price] / kept_share, rel=1e-4)
        assert pruned[1].kept_mass >= 0.8 ** 2 * full.kept_mass  # two pruned depths, each keeping 80% or more


def test_whole_number_tokenizer_takes_one_forward_and_its_exact_expectation(llama_tokenizer):
    tokenizer = llama_tokenizer
    numbers = number_tokens(tokenizer)
    model = tiny_llama(tokenizer, numbers.ids)
    predictor = PricePredictor(model, tokenizer, batch_size=8)  # whole numbers are complete prices: none pruned
    calls = count_forwards(model)
    prices = predictor.predict_batch(PROMPTS)
    assert len(calls) == 1
    for prompt, price in zip(PROMPTS, prices):
        logp = next_token_logp(model, [tokenizer(prompt)["input_ids"]])[0][numbers.ids]
        assert price == pytest.approx((logp.softmax(-1) * torch.arange(1000)).sum().item(), rel=1e-5)


def test_fused_kernels_and_rounded_lengths_keep_the_exact_expectation(llama_tokenizer):
    """What a GPU runs (compiled RMSNorm, SwiGLU and rotary, any length), forced on CPU; only this model
    changes: transformers' module and another model of the family keep the eager rotary embedding."""
    import transformers.models.llama.modeling_llama as llama

    stock_rotary = llama.apply_rotary_pos_emb
    tokenizer = llama_tokenizer
    numbers = number_tokens(tokenizer)
    model, other = tiny_llama(tokenizer, numbers.ids), tiny_llama(tokenizer, numbers.ids)
    plain = PricePredictor(model, tokenizer, batch_size=8).predict_batch(PROMPTS)
    fused = PricePredictor(model, tokenizer, batch_size=8, fused=True)
    attention = [m for m in model.modules() if isinstance(m, llama.LlamaAttention)]
    assert fused.fused and llama.apply_rotary_pos_emb is stock_rotary
    assert all(m.forward.__globals__["apply_rotary_pos_emb"] is not stock_rotary for m in attention)
    assert not any("forward" in vars(m) for m in other.modules())  # the other model is untouched
    assert fused.cache_key != PricePredictor(model, tokenizer, fused=False).cache_key  # never mixed on resume
    assert fused.predict_batch(PROMPTS) == pytest.approx(plain, rel=1e-4)


def test_digit_tokenizer_takes_one_forward_per_digit(digit_tokenizer):
    model = tiny_llama(digit_tokenizer, number_tokens(digit_tokenizer).ids)
    calls = count_forwards(model)
    PricePredictor(model, digit_tokenizer, batch_size=8, max_digits=3).predict_batch(PROMPTS)
    assert len(calls) == 3  # the prompt, then after the first and second digits; the third ends it


def test_the_fused_digit_tree_prices_as_the_plain_one(digit_tokenizer):
    """On a GPU each depth's log-probabilities come from one compiled kernel (_number_logp, fused): forced on CPU,
    the same distributions as the few-rows-at-a-time fp32 path."""
    model = tiny_llama(digit_tokenizer, number_tokens(digit_tokenizer).ids)
    plain = PricePredictor(model, digit_tokenizer, batch_size=8, fused=False).distributions(PROMPTS)
    fused = PricePredictor(model, digit_tokenizer, batch_size=8, fused=True).distributions(PROMPTS)
    for a, b in zip(plain, fused):
        assert a.prices == b.prices and a.probs == pytest.approx(b.probs, rel=1e-4, abs=1e-7)


def test_a_batch_is_queued_unmasked_and_only_a_pruned_trees_width_is_read_before_its_answers(llama_tokenizer,
                                                                                             digit_tokenizer):
    """The prompts reach the model right-padded without an attention mask (causal attention keeps the padding out
    of view), and queuing a batch reads nothing back from the device (on a GPU each read waits for all queued
    work) but, for a digit tree, the width of each pruned depth past the first (the first digit's ten children all
    go on, the pruned ones masked)."""
    for tokenizer, depths in ((llama_tokenizer, 0), (digit_tokenizer, 2)):
        model = tiny_llama(tokenizer, number_tokens(tokenizer).ids)
        predictor = PricePredictor(model, tokenizer, batch_size=8, max_digits=3)
        masks = []
        model.model.register_forward_pre_hook(lambda m, args, kwargs: masks.append(kwargs.get("attention_mask")),
                                              with_kwargs=True)
        rows = [tokenizer(prompt_of(p))["input_ids"] for p in PROMPTS]
        assert device_reads(lambda: predictor._expand(rows)) == ["item"] * max(depths - 1, 0)
        assert masks[0] is None and all(m.dim() == 4 for m in masks[1:]) and len(masks) == depths + 1


def test_the_digit_tree_writes_its_prefixes_into_the_cache_without_copying_it(digit_tokenizer, monkeypatch):
    """Each depth's prefixes go into room the prompt's cache reserved: no cache is grown by concatenation
    (DynamicCache copies every layer's keys and values at each depth), and the answers are a grown cache's."""
    from torch.utils._python_dispatch import TorchDispatchMode

    import pricer.predict as predict_module

    model = tiny_llama(digit_tokenizer, number_tokens(digit_tokenizer).ids)
    predictor = PricePredictor(model, digit_tokenizer, batch_size=8, max_digits=3)
    rows = [digit_tokenizer(prompt_of(p))["input_ids"] for p in PROMPTS]

    def expand_counting_cache_growth():
        grown = []

        class CacheGrowth(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                dim = args[1] if len(args) > 1 else (kwargs or {}).get("dim", 0)
                if func.__name__.startswith("cat") and args[0][0].dim() == 4 and dim in (2, -2):
                    grown.append(func.__name__)
                return func(*args, **(kwargs or {}))

        with CacheGrowth():
            answers = predictor._expand(rows)
        return answers, len(grown)

    roomy, copies = expand_counting_cache_growth()
    assert copies == 0
    monkeypatch.setattr(predict_module, "roomy_cache", lambda room: None)  # the model's own DynamicCache
    grown, copies = expand_counting_cache_growth()
    assert copies == 2 * 2 * model.config.num_hidden_layers  # keys and values of each layer, at two depths
    for a, b in zip(roomy, grown):
        assert torch.allclose(a.double(), b.double(), atol=1e-6)
    monkeypatch.undo()
    model.config.sliding_window = 4096  # a sliding-window model (Mistral's config) keeps the cache it makes itself
    assert expand_counting_cache_growth()[1] == 2 * 2 * model.config.num_hidden_layers


# ----- batching on the real embedded model -----

def test_batched_predictions_equal_per_item_ones_whatever_the_padding(embedded):
    """Rel. tolerance 1e-4: fp32 sums in another order; a shifted position would move prices by far more."""
    model, tokenizer = embedded
    assert tokenizer.padding_side == "right"  # the training default must not leak into prediction
    lengths = [len(tokenizer(p)["input_ids"]) for p in PROMPTS]
    assert max(lengths) > 5 * min(lengths) and lengths != sorted(lengths)
    predictor = PricePredictor(model, tokenizer, batch_size=8)
    batched = predictor.distributions(PROMPTS)
    single = [predictor.distributions([p])[0] for p in PROMPTS]
    for b, s in zip(batched, single):
        assert b.mean == pytest.approx(s.mean, rel=1e-4)
        assert dict(zip(b.prices, b.probs)) == pytest.approx(dict(zip(s.prices, s.probs)), rel=1e-3, abs=1e-7)
    assert len({round(s.mean, 2) for s in single}) == len(PROMPTS)  # the prompts really differ


def test_course_predictors_on_the_embedded_model(embedded):
    model, tokenizer = embedded
    predictor = bind(model_predict, model, tokenizer)
    text = predictor({"prompt": PROMPTS[0], "completion": "353.99"})  # max_new_tokens 8, as the course
    assert isinstance(text, str) and evaluator.Tester.post_process(text) is not None
    assert evaluator.Tester.make_title(predictor) == "Model Predict" and model.name_or_path in predictor.cache_key
    first_digits = improved_model_predict(PROMPTS[0], model, tokenizer, top_k=10)
    assert isinstance(first_digits, float) and 0 < first_digits <= 9  # why digit tokenizers need the tree


def test_improved_model_predict_averages_the_top_three_prices_of_the_distribution(llama_tokenizer):
    tokenizer = llama_tokenizer
    model = tiny_llama(tokenizer, number_tokens(tokenizer).ids)
    for prompt, dist in zip(PROMPTS, PricePredictor(model, tokenizer).distributions(PROMPTS)):
        logits = next_token_logp(model, [tokenizer(prompt)["input_ids"]])[0]
        assert all(tokenizer.decode(i).isdigit() for i in logits.topk(3).indices.tolist())  # the course's case
        top = sorted(zip(dist.probs, dist.prices), reverse=True)[:3]
        expected = sum(q * p for q, p in top) / sum(q for q, _ in top)
        assert improved_model_predict(prompt, model, tokenizer) == pytest.approx(expected, rel=1e-5)


def test_improved_model_predict_returns_zero_not_a_tuple_when_no_top_token_is_a_number(digit_tokenizer):
    model = tiny_llama(digit_tokenizer, [])
    with torch.no_grad():
        model.lm_head.weight.normal_()  # random odds everywhere: the top three are words
    assert improved_model_predict(PROMPTS[0], model, digit_tokenizer) == 0.0


# ----- the Tester, inputs, cache keys -----

def test_tester_runs_the_batched_predictor_in_chunks_with_per_item_results(digit_tokenizer):
    model = tiny_llama(digit_tokenizer, number_tokens(digit_tokenizer).ids)
    predictor = PricePredictor(model, digit_tokenizer, batch_size=3)
    rows = [{"prompt": p, "completion": str(10.0 * (i + 1))} for i, p in enumerate(PROMPTS * 2)]
    calls = count_forwards(model)
    result = evaluate(predictor, rows, size=len(rows), save=False)
    assert len(calls) == 3 * 3  # three chunks of at most 3 rows, three forwards each
    assert result.guesses == pytest.approx([predictor(r) for r in rows], rel=1e-4)
    assert result.metrics["unparsed"] == 0 and result.name == "Expected Price"


def test_items_rows_and_strings_are_all_accepted():
    item = Item(title="Pen", category="Office", price=2.5, summary="Title: Pen")
    assert prompt_of(item) == make_prompt("Title: Pen")
    assert prompt_of({"prompt": "p", "completion": "1"}) == prompt_of("p") == "p"
    with pytest.raises(ValueError, match="no prompt or summary"):
        prompt_of(Item(title="Pen", category="Office", price=2.5))


def test_bad_settings_are_refused(digit_tokenizer):
    model = tiny_llama(digit_tokenizer, [])
    for kwargs, problem in (({"stat": "mode"}, "stat"), ({"top_k": 0}, "top_k"), ({"max_digits": 0}, "max_digits"),
                            ({"coverage": 0}, "coverage"), ({"coverage": 1.5}, "coverage")):
        with pytest.raises(ValueError, match=problem):
            PricePredictor(model, digit_tokenizer, **kwargs)


def test_cache_key_follows_the_settings_and_the_adapter_weights(digit_tokenizer):
    from peft import LoraConfig, get_peft_model

    model = tiny_llama(digit_tokenizer, [])
    key = PricePredictor(model, digit_tokenizer).cache_key
    assert key == PricePredictor(model, digit_tokenizer).cache_key
    assert key != PricePredictor(model, digit_tokenizer, stat="median").cache_key
    assert key != PricePredictor(model, digit_tokenizer, top_k=4).cache_key
    assert key != PricePredictor(model, digit_tokenizer, coverage=0.9).cache_key
    tuned = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"]))
    before = PricePredictor(tuned, digit_tokenizer).cache_key
    with torch.no_grad():
        next(p for n, p in tuned.named_parameters() if "lora_B" in n).add_(0.01)  # one training step, say
    assert before != key and before != PricePredictor(tuned, digit_tokenizer).cache_key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batched_equals_per_item_on_gpu_in_bf16():
    """bf16 rounds at ~3 significant digits, so the tolerance is 1% of the price."""
    from pricer.models import load_model, load_tokenizer

    model, tokenizer = load_model("embedded", quant="4bit"), load_tokenizer("embedded")
    predictor = PricePredictor(model, tokenizer)
    assert predictor.predict_batch(PROMPTS) == pytest.approx([predictor(p) for p in PROMPTS], rel=1e-2)


def test_batched_generation_equals_the_course_model_predict():
    """GenerationPredictor is model_predict, batched: same greedy answers on prompts of mixed lengths."""
    from pricer.config import EMBEDDED
    from pricer.items import load_prompts
    from pricer.models import load_model, load_tokenizer
    from pricer.predict import GenerationPredictor, model_predict

    tokenizer, model = load_tokenizer(EMBEDDED), load_model(EMBEDDED, quant=None)
    rows = load_prompts(EMBEDDED)["test"][:4] + [{"prompt": "Price is $", "completion": "1"}]
    batched = GenerationPredictor(model, tokenizer, max_new_tokens=4).predict_batch(rows)
    assert batched == [model_predict(r, model, tokenizer, max_new_tokens=4).replace("<|im_end|>", "") for r in rows]
    assert tokenizer.padding_side == "right"  # the caller's tokenizer is left as it was
