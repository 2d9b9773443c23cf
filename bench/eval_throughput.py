"""Evaluation throughput: the course's per-item predictors against the batched PricePredictor.

    python bench/eval_throughput.py --smoke   # CPU, tiny random Llama, < 1 min: checks the script runs
    python bench/eval_throughput.py --cpu     # CPU, the embedded SmolLM2 (digit tokenizer): ours vs per-item
    python bench/eval_throughput.py           # GPU: Llama-3.2-3B-shaped random model in 4-bit NF4

The GPU run needs no Hub: the model is built from Llama-3.2-3B's config with random weights (same
compute and memory as the real one), saved, and reloaded 4-bit with the course's BitsAndBytesConfig.
The Llama-3 tokenizer isn't available offline either, so a stand-in word-level tokenizer writes
every number 0-999 as one token, as Llama-3 does; prompts are random words at the course's prompt
length (~100-128 tokens). One run times, on the same model: the course's `model_predict`
(generate 8 tokens), its `improved_model_predict` (one forward), and ours at several batch sizes
as the Tester drives it (chunks of batch_size in data order), with peak GPU memory; then ours with
a digit-by-digit stand-in tokenizer, the tree path SmolLM2-style tokenizers take. Results go to
bench/results/eval_throughput.json (eval_throughput_cpu.json for --cpu) with the machine named.
"""

import argparse
import json
import platform
import random
import string
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, on a box where pricer isn't installed

LLAMA_3_2_3B = dict(  # meta-llama/Llama-3.2-3B's config.json, as far as compute and memory go
    hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
    num_key_value_heads=8, head_dim=128, vocab_size=128256, max_position_embeddings=131072,
    rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=128000,
    eos_token_id=128001, rope_scaling=dict(rope_type="llama3", factor=32.0, high_freq_factor=4.0,
                                           low_freq_factor=1.0, original_max_position_embeddings=8192))
WORDS = 3000  # stand-in vocabulary of words; the model's vocabulary is larger, so every id is valid


def standin_tokenizer(numbers: str = "whole", words: int = WORDS):
    """A word-level tokenizer that writes numbers 0-999 as one token ("whole", like Llama-3) or per digit."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    vocab = ["<unk>", "<eos>"] + [str(n) for n in range(1000 if numbers == "whole" else 10)]
    vocab += list(string.punctuation) + ["What", "does", "this", "cost", "to", "the", "nearest", "dollar",
                                         "Title", "Category", "Brand", "Description", "Price", "is"]
    vocab += sorted({"".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(words)})
    vocab = list(dict.fromkeys(vocab))
    chunk = r"\d{1,3}" if numbers == "whole" else r"\d"
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(rf"{chunk}|[A-Za-z]+|[^A-Za-z\d]"), behavior="isolated")])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")


def standin_prompts(tokenizer, n: int, tokens=(100, 128), seed: int = 0) -> list[dict]:
    """Course-shaped prompt rows of random catalog words, `tokens` long (inclusive range) in this tokenizer."""
    from pricer.prompts import make_prompt

    rng = random.Random(seed)
    words = [w for w in tokenizer.get_vocab() if w.isalpha() and w.islower()]
    overhead = len(tokenizer.encode(make_prompt("Title:")))
    rows = []
    for _ in range(n):
        body = " ".join(rng.choices(words, k=rng.randint(*tokens) - overhead))
        rows.append({"prompt": make_prompt(f"Title: {body}"), "completion": f"{rng.uniform(1, 999):.2f}"})
    return rows


def machine() -> str:
    """The machine in words, for the results file."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)"
    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")] if Path("/proc/cpuinfo").exists() else []
    cpu = names[0] if names else platform.machine()
    return f"{cpu} CPU, {len(names) or '?'} cores, {torch.get_num_threads()} threads"


WARMUP = {}  # label -> seconds of the untimed first pass (compiling every shape it meets)


def timed(fn, rows, warmup=None, label: str | None = None) -> float:
    """Items per second of fn(rows) after one untimed call: on a few rows (kernels, allocator), or for
    compiled kernels the same rows (`warmup=rows`: each batch length compiles on first sight; the first
    pass's seconds go to WARMUP[label])."""
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    start = time.perf_counter()
    fn(warmup or rows[:2])
    sync()
    if label:
        WARMUP[label] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    fn(rows)
    sync()
    return len(rows) / (time.perf_counter() - start)


def tokenize_seconds(tokenizer, rows) -> float:
    """What one predictor call spends tokenizing `rows` before its first batch can start (best of 3)."""
    from pricer.prompts import prompt_of

    def once():
        start = time.perf_counter()
        tokenizer([prompt_of(r) for r in rows])
        return time.perf_counter() - start
    return round(min(once() for _ in range(3)), 4)


def tester_style(predictor):
    """Predict as the Tester does: chunks of chunk_size (else batch_size) in data order."""
    step = getattr(predictor, "chunk_size", None) or predictor.batch_size

    def run(rows):
        for k in range(0, len(rows), step):
            predictor.predict_batch(rows[k:k + step])
    return run


def per_item(fn):
    def run(rows):
        for row in rows:
            fn(row)
    return run


def random_llama(config: dict, folder: Path, quant: str | None):
    """A random-weight Llama from `config`, saved to `folder`, reloaded the way students load theirs."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from pricer.models import compute_dtype, device, quant_config

    torch.manual_seed(0)
    with torch.device(device()):  # initialise on the GPU: seconds instead of minutes for 3B weights
        model = LlamaForCausalLM(LlamaConfig(**config)).to(compute_dtype())
    model.save_pretrained(folder)
    del model
    model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant_config(quant),
                                                 dtype=compute_dtype(), device_map=device())
    model.generation_config.pad_token_id = config["eos_token_id"]
    return model


def compare(model, tokenizer, rows, batch_sizes, seed_items, improved_items) -> dict:
    """Seed methods per item, then ours at each batch size, on the same model and rows."""
    import torch

    from pricer.predict import PricePredictor, bind, improved_model_predict, model_predict

    seed = timed(per_item(bind(model_predict, model, tokenizer)), rows[:seed_items])
    improved = timed(per_item(bind(improved_model_predict, model, tokenizer)), rows[:improved_items])
    print(f"seed model_predict          {seed:8.2f} items/s ({seed_items} items)")
    print(f"seed improved_model_predict {improved:8.2f} items/s ({improved_items} items)")
    eager = None
    if torch.cuda.is_available():  # before anything fuses the model's kernels (in place)
        eager = timed(tester_style(PricePredictor(model, tokenizer, batch_size=max(batch_sizes), fused=False)), rows,
                      warmup=rows[:max(batch_sizes)])
        print(f"ours batch {max(batch_sizes):4d}, eager kernels {eager:8.2f} items/s")
    ours = {}
    for bs in batch_sizes:
        predictor = PricePredictor(model, tokenizer, batch_size=bs)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        rate = timed(tester_style(predictor), rows, warmup=rows, label=f"batch_{bs}")
        peak = torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None
        ours[bs] = {"items_per_s": rate, "peak_gb": peak}
        print(f"ours batch {bs:4d}              {rate:8.2f} items/s  {rate / seed:7.1f}x model_predict  "
              f"{rate / improved:6.1f}x improved" + (f"  peak {peak:.2f} GB" if peak else ""))
    return {"model_predict_items_per_s": seed, "improved_model_predict_items_per_s": improved,
            "ours_eager_kernels_items_per_s": eager, "ours": ours}


def gpu(args) -> dict:
    """The 3B-shaped 4-bit model: seeds, ours across batch sizes, and the digit-tree path."""
    import torch

    from pricer.predict import PricePredictor, default_batch_size

    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as folder:
        start = time.perf_counter()
        model = random_llama(LLAMA_3_2_3B, Path(folder), "4bit")
        print(f"built and loaded the 4-bit model in {time.perf_counter() - start:.0f} s")
    preset = default_batch_size(model)
    digit_tok = standin_tokenizer("digits")
    digit_rows = standin_prompts(digit_tok, args.items // 2)
    eager_tree = PricePredictor(model, digit_tok, fused=False)  # before anything fuses the kernels (in place)
    eager_tree_rate = timed(tester_style(eager_tree), digit_rows, warmup=digit_rows[:eager_tree.batch_size])
    print(f"ours digit tree, eager kernels {eager_tree_rate:8.2f} items/s")
    tokenizer = standin_tokenizer("whole")
    rows = standin_prompts(tokenizer, args.items)
    tokenize_s = tokenize_seconds(tokenizer, rows)
    print(f"tokenizing the {len(rows)} prompts on this host: {tokenize_s:.3f} s (the GPU idles then)")
    sizes = sorted(set(args.batch_sizes) | {preset})
    result = compare(model, tokenizer, rows, sizes, args.seed_items, args.improved_items)
    per_batch = PricePredictor(model, tokenizer)  # the Tester handing over one batch at a time, as before chunks
    per_batch.chunk_size = per_batch.batch_size
    result["ours_one_batch_per_call_items_per_s"] = timed(tester_style(per_batch), rows, warmup=rows)
    print(f"ours batch {preset}, one batch per call {result['ours_one_batch_per_call_items_per_s']:8.2f} items/s")
    digits = PricePredictor(model, digit_tok)  # its own default batch size, fused kernels
    torch.cuda.reset_peak_memory_stats()
    digit_rate = timed(tester_style(digits), digit_rows, warmup=digit_rows, label="digit_tree")
    digit_peak = torch.cuda.max_memory_allocated() / 1e9
    print(f"ours digit tree, batch {digits.batch_size}   {digit_rate:8.2f} items/s  peak {digit_peak:.2f} GB")
    grown_rate = grown_cache_rate(model, digit_tok, digit_rows)
    print(f"ours digit tree, its cache grown by copying at each depth (as before) {grown_rate:8.2f} items/s")
    chunked = PricePredictor(model, digit_tok)
    chunked._logp = None  # log-probabilities a few rows at a time in fp32, not in one compiled kernel
    chunked_rate = timed(tester_style(chunked), digit_rows, warmup=digit_rows)
    print(f"ours digit tree, log-probabilities 8 rows at a time (as before) {chunked_rate:8.2f} items/s")
    repeated_rate = stock_attention_rate(model, digit_tok, digit_rows)
    print(f"ours digit tree, transformers' SDPA (keys repeated per head, as before) {repeated_rate:8.2f} items/s")
    return summary(result, preset, {"digit_tree_items_per_s": digit_rate, "digit_tree_peak_gb": digit_peak,
                                    "digit_tree_batch_size": digits.batch_size,
                                    "digit_tree_eager_kernels_items_per_s": eager_tree_rate,
                                    "digit_tree_grown_cache_items_per_s": grown_rate,
                                    "digit_tree_chunked_logp_items_per_s": chunked_rate,
                                    "digit_tree_repeated_heads_items_per_s": repeated_rate,
                                    "first_pass_s": WARMUP, "tokenize_s": tokenize_s,
                                    "model": "Llama-3.2-3B config, random weights, 4-bit NF4 double quant",
                                    "footprint_gb": model.get_memory_footprint() / 1e9})


def grown_cache_rate(model, tokenizer, rows) -> float:
    """Ablation: the digit tree with the model's own DynamicCache, copied to grow at each depth (before roomy_cache)."""
    import pricer.predict as predict
    from pricer.predict import PricePredictor

    roomy, predict.roomy_cache = predict.roomy_cache, lambda room: None
    try:
        return timed(tester_style(PricePredictor(model, tokenizer)), rows, warmup=rows)
    finally:
        predict.roomy_cache = roomy


def stock_attention_rate(model, tokenizer, rows) -> float:
    """Ablation: the digit tree attending through transformers' own SDPA, which repeats the cache's keys and
    values for each query head under the tree's mask (before pricer.patches.transformers.use_our_attention)."""
    import pricer.predict as predict
    from pricer.predict import PricePredictor

    ours, predict.use_our_attention = predict.use_our_attention, lambda model: False
    implementation = model.config._attn_implementation
    model.set_attn_implementation("sdpa")
    try:
        return timed(tester_style(PricePredictor(model, tokenizer)), rows, warmup=rows)
    finally:
        predict.use_our_attention = ours
        model.set_attn_implementation(implementation)


def summary(result, preset, extra) -> dict:
    """The headline numbers at the preset's batch size, then everything measured."""
    ours = result["ours"][preset]
    return {"machine": machine(), "batch_size": preset, "items_per_s": ours["items_per_s"],
            "speedup_vs_model_predict": ours["items_per_s"] / result["model_predict_items_per_s"],
            "speedup_vs_improved_model_predict": ours["items_per_s"] / result["improved_model_predict_items_per_s"],
            "peak_gb": ours["peak_gb"], **extra, **result}


def cpu(args, smoke: bool) -> dict:
    """CPU: the embedded SmolLM2 (digit tree) or, with --smoke, a tiny random Llama (whole numbers)."""
    import torch

    from pricer.models import load_model, load_tokenizer

    if smoke:
        tokenizer = standin_tokenizer("whole")
        tiny = dict(LLAMA_3_2_3B, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16)
        with tempfile.TemporaryDirectory() as folder:
            model = random_llama(tiny, Path(folder), None)
        rows, name = standin_prompts(tokenizer, args.items), "tiny random Llama (smoke)"
    else:
        from pricer.items import load_prompts

        tokenizer, model = load_tokenizer("embedded"), load_model("embedded", quant=args.quant)
        rows, name = load_prompts("embedded")["test"][:args.items], f"embedded SmolLM2-135M, quant={args.quant}"
    preset = args.batch_sizes[-1] if smoke else 16
    result = compare(model, tokenizer, rows, args.batch_sizes, args.seed_items, args.improved_items)
    from pricer.predict import PricePredictor

    single = timed(per_item(PricePredictor(model, tokenizer, batch_size=1)), rows[:args.improved_items])
    batched = result["ours"][preset]["items_per_s"]
    print(f"ours one item at a time     {single:8.2f} items/s; batched {batched / single:.1f}x that")
    return summary(result, preset, {"model": name, "ours_per_item_items_per_s": single,
                                    "torch_threads": torch.get_num_threads()})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny random Llama: does the script run?")
    parser.add_argument("--cpu", action="store_true", help="CPU, the embedded SmolLM2: ours vs per-item")
    parser.add_argument("--quant", default="4bit", help="--cpu: 4bit (the tiny preset), 8bit or none")
    parser.add_argument("--items", type=int, help="rows our predictor runs over (per batch size)")
    parser.add_argument("--seed-items", type=int, help="rows for model_predict (slow: ~0.4 s each on an H100)")
    parser.add_argument("--improved-items", type=int, help="rows for improved_model_predict")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="ours at each of these; the preset's is timed too")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/eval_throughput[_cpu].json)")
    args = parser.parse_args(argv)
    args.quant = None if args.quant == "none" else args.quant
    mode = "smoke" if args.smoke else "cpu" if args.cpu else "gpu"
    defaults = {"smoke": (64, 4, 8, [8, 32]), "cpu": (64, 4, 12, [4, 16, 32]),
                "gpu": (2048, 12, 48, [16, 32, 64, 128, 256])}[mode]
    for key, value in zip(("items", "seed_items", "improved_items", "batch_sizes"), defaults):
        setattr(args, key, getattr(args, key) or value)
    if mode == "gpu":
        import torch

        if not torch.cuda.is_available():
            sys.exit("no CUDA GPU: run with --smoke or --cpu here, or through the device tool")
    results = gpu(args) if mode == "gpu" else cpu(args, smoke=mode == "smoke")
    results.update(mode=mode, date=time.strftime("%Y-%m-%d"))
    out = args.out or (None if mode == "smoke" else
                       ROOT / "bench" / "results" / f"eval_throughput{'_cpu' if mode == 'cpu' else ''}.json")
    text = json.dumps(results, indent=1, default=str)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"saved {out}")


if __name__ == "__main__":
    main()
