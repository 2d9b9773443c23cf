"""The command line: `python -m pricer <command>`.

    python -m pricer lab                      # the whole lab, tiny preset, offline (the main job)
    python -m pricer data --out data/catalog  # the embedded catalog as train / val / test folders
    python -m pricer data --out data/lite --train 20000 --val 1000 --test 1000   # any sizes
    python -m pricer train --preset lite      # QLoRA fine-tuning; the same command again resumes
    python -m pricer evaluate --preset lite   # the newest adapter's expected prices on the test split
    python -m pricer human-template --out human.csv   # test products for a class to price
"""

import argparse
import sys


def data(args) -> None:
    """Write the embedded catalog's items and prompts to a folder."""
    from pricer.catalog import SIZES, write_catalog
    from pricer.config import get_preset

    preset = get_preset(args.preset)
    sizes = {split: SIZES[split] if getattr(args, split) is None else getattr(args, split) for split in SIZES}
    bad = [f"--{split} {size}" for split, size in sizes.items() if size < 0]
    if bad:
        raise SystemExit(f"pricer: {', '.join(bad)}: a split's size is a number of rows, 0 or more")
    out = write_catalog(args.out, seed=args.seed, sizes=sizes, summary_tokens=preset.summary_tokens)
    print(f"pricer: catalog ({sizes['train']:,} / {sizes['val']:,} / {sizes['test']:,} rows) written to {out}/items "
          f"and {out}/prompts-{preset.summary_tokens}")


def lab(args) -> None:
    """Execute the five notebooks and write the report (the README's first command)."""
    from pricer.lab import run_lab

    run_lab(args.preset, args.runs_dir, fresh=args.fresh)


def _preset(args):
    """The chosen preset with its --set overrides, after joining (or launching) the --gpus processes."""
    from pricer import distributed
    from pricer.config import get_preset, parse_overrides

    distributed.start(args.argv, args.gpus)
    return get_preset(args.preset, **parse_overrides(args.set))


def train(args) -> None:
    """QLoRA fine-tuning; the same command again resumes; --gpus N trains data-parallel."""
    from pricer import distributed
    from pricer.train import train as run

    result = run(_preset(args), args.output_dir, args.max_steps, args.push, args.micro_batch, args.checkpointing,
                 fast=not args.plain)
    if distributed.is_main():
        print(f"pricer: adapter saved to {result.adapter} after {result.steps} steps")


def evaluate(args) -> None:
    """Score base + adapter (the newest finished run by default) with batched expected prices."""
    from pricer import distributed
    from pricer.evaluator import evaluate as score
    from pricer.items import load_prompts
    from pricer.models import load_finetuned, load_model, load_tokenizer
    from pricer.predict import PricePredictor
    from pricer.train import latest_adapter

    preset = _preset(args)  # --gpus N: the test items are sharded over N processes
    adapter = None if args.base else args.adapter or latest_adapter(args.output_dir, preset.name)
    if not args.base and adapter is None:
        raise SystemExit(f"pricer: no finished {preset.name} run in {args.output_dir}: train first, "
                         "pass --adapter PATH_OR_REPO, or --base for the untrained model")
    model = (load_finetuned(preset.base_model, str(adapter), preset.quant) if adapter
             else load_model(preset.base_model, preset.quant))
    test = load_prompts(preset.prompts)["test"]
    predictor = distributed.Sharded(PricePredictor(model, load_tokenizer(preset.base_model), stat=args.stat))
    title = f"{'Fine-tuned' if adapter else 'Base model'} {args.stat} price ({preset.name})"
    score(predictor, test, size=min(args.size or len(test), len(test)), title=title,
          meta={"preset": preset.name, "model": f"{preset.base_model} + {adapter}" if adapter else preset.base_model})


def human_template(args) -> None:
    """Write a human-guess CSV for the preset's test items."""
    from pricer.human import template_for_preset

    path = template_for_preset(args.out, size=args.size, preset=args.preset)
    print(f"pricer: wrote a {args.size}-row template to {path}; fill in the guess column")


def _run_options(p, gpus: str) -> None:
    """The options `train` and `evaluate` share: which preset, where runs go, overrides, GPUs."""
    p.add_argument("--preset", default="tiny", help="tiny (CPU, embedded), lite or full")
    p.add_argument("--output-dir", default="outputs", help="run folders: OUTPUT_DIR/<preset>-<timestamp>/")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="preset overrides, e.g. train_rows=5000")
    p.add_argument("--gpus", type=int, default=1, help=gpus)


def main(argv: list[str] | None = None) -> None:
    """Parse the command and run it."""
    parser = argparse.ArgumentParser(prog="python -m pricer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("data", help="write the embedded catalog to a folder")
    p.add_argument("--out", required=True, help="folder to write items/ and prompts-<cap>/ into")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--preset", default="tiny", help="whose summary cap the prompts use")
    for split, size in (("train", "4,000"), ("val", "200"), ("test", "400")):
        p.add_argument(f"--{split}", type=int, metavar="ROWS", help=f"{split} rows (default: the catalog's {size})")
    p.set_defaults(run=data)

    p = commands.add_parser("lab", help="execute the five notebooks in order and write report.html")
    p.add_argument("--preset", default="tiny", help="tiny (CPU, embedded default), lite or full")
    p.add_argument("--runs-dir", default="runs", help="executed notebooks go to RUNS_DIR/<timestamp>/")
    p.add_argument("--fresh", action="store_true", help="start a new run instead of resuming")
    p.set_defaults(run=lab)

    p = commands.add_parser("train", help="QLoRA fine-tuning; rerun the same command to resume")
    _run_options(p, gpus="data-parallel over N GPUs of this machine (accelerate), same effective batch")
    p.add_argument("--max-steps", type=int, help="stop after N optimizer steps (a short trial run)")
    p.add_argument("--push", metavar="HUBNAME", help="also push checkpoints and the adapter to this private Hub repo")
    p.add_argument("--micro-batch", type=int, help="rows per forward pass (default: the largest that fits)")
    p.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="force gradient checkpointing on or off (default: only when memory needs it)")
    p.add_argument("--plain", action="store_true", help="the course's padded batches, no fused kernels")
    p.set_defaults(run=train)

    p = commands.add_parser("evaluate", help="expected-price evaluation of a trained adapter on the test split")
    _run_options(p, gpus="shard the test items over N GPUs of this machine, results gathered in order")
    p.add_argument("--adapter", help="adapter folder or Hub repo (default: the newest finished run)")
    p.add_argument("--base", action="store_true", help="the untrained base model, no adapter")
    p.add_argument("--size", type=int, help="test items (default: all)")
    p.add_argument("--stat", default="mean", choices=("mean", "median"), help="which summary of the distribution")
    p.set_defaults(run=evaluate)

    p = commands.add_parser("human-template", help="write a CSV of test products for people to price")
    p.add_argument("--out", required=True, help="the CSV to write")
    p.add_argument("--size", type=int, default=100, help="how many test products")
    p.add_argument("--preset", default="tiny", help="whose test items")
    p.set_defaults(run=human_template)

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv  # what --gpus N relaunches on each process
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
