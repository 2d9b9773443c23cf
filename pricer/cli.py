"""The command line: `python -m pricer <command>`.

    python -m pricer lab                      # the whole lab, tiny preset, offline (the main job)
    python -m pricer data --out data/catalog  # the embedded catalog as train / val / test folders
    python -m pricer data --out data/lite --train 20000 --val 1000 --test 1000   # any sizes
    python -m pricer data --items my_items --out data/mine --preset smol   # your products as the preset's prompts
    python -m pricer train --preset lite      # QLoRA fine-tuning; the same command again resumes
    python -m pricer evaluate --preset lite   # the newest matching adapter's expected prices on the test split
    python -m pricer human-template --out human.csv   # test products for a class to price

`--set key=value` (repeatable, or several after one flag) changes any preset value, typed and
checked by `pricer.config`. What a command needs (its folders, free space, the GPUs, the Hub
for --push, an adapter) is checked before any work. Every failure passes `pricer.edge`: one you
can fix prints as one or two lines naming the setting, file or resource and the remedy, exit
code 2; anything else says it is a bug and where its traceback was saved, exit code 1.
`--debug` (before or after the command, or PRICER_DEBUG=1) shows the traceback too; everything
printed is redacted (`pricer.env.redact`).
"""

import argparse
import os
import sys

from pricer import checks
from pricer.errors import PricerError, SettingError


def data(args) -> None:
    """Make prompts from your items (--items), or write the embedded catalog's items and prompts to a folder."""
    from pricer.config import get_preset, parse_settings
    from pricer.files import check_folder
    from pricer.sources import resolve, write_catalog

    preset = get_preset(args.preset, **parse_settings(args.set))
    check_folder(args.out, "--out")
    if args.items:
        from pricer.dataprep import prepare

        tally = prepare(args.items, args.out, preset.summary_tokens, resolve(preset.base_model, "model"))
        tally.print()
        print(f"pricer: prompts for preset {preset.name!r} (summaries cut at {preset.summary_tokens} tokens) written "
              f"to {args.out}; train on them with: python -m pricer train --preset {preset.name} --set "
              f"items={args.items} (or prompts={args.out})")
        return
    sizes = {"train": args.train, "val": args.val, "test": args.test}
    out = write_catalog(args.out, seed=args.seed, sizes=sizes, summary_tokens=preset.summary_tokens)
    print(f"pricer: catalog ({sizes['train']:,} / {sizes['val']:,} / {sizes['test']:,} rows) written to {out}/items "
          f"and {out}/prompts-{preset.summary_tokens}")


def lab(args) -> None:
    """Execute the five notebooks and write the report (the README's first command)."""
    from pricer.config import parse_settings
    from pricer.lab import run_lab

    run_lab(args.preset, args.runs_dir, fresh=args.fresh, settings=parse_settings(args.set), t4=args.t4)


def _job(args, check=None):
    """The chosen preset with its --set values resolved into one job (names, data read once, device), after
    joining (or launching) the --gpus processes.

    Bad values, GPUs that aren't there and `check(preset)`'s refusals come before any launch."""
    from pricer import distributed
    from pricer.config import get_preset, parse_settings
    from pricer.job import items_set, resolve_job

    preset = get_preset(args.preset, **parse_settings(args.set))
    items_set(preset)  # items= and prompts= together: refused before any launch
    if distributed.world_size() == 1:
        checks.gpus(args.gpus)
    if check:
        check(preset)
    distributed.start(args.argv, args.gpus)
    return resolve_job(preset)


def train(args) -> None:
    """QLoRA fine-tuning; the same command again resumes; --gpus N trains data-parallel."""
    from pricer import distributed
    from pricer.train import train as run

    job = _job(args, check=lambda p: checks.train(args, p))
    if distributed.is_main():
        checks.rows_and_room(args, job)
    result = run(job, args.output_dir, max_steps=args.max_steps, push=args.push, seed=args.seed,
                 micro_batch=args.micro_batch, checkpointing=args.checkpointing, fast=not args.plain)
    if distributed.is_main():
        print(f"pricer: adapter saved to {result.run_dir} after {result.steps} steps")


def evaluate(args) -> None:
    """Score base + adapter (by default the newest finished run that fits, said) with batched expected prices."""
    from pricer import distributed
    from pricer.evaluator import evaluate as score
    from pricer.models import load_finetuned, load_model, load_tokenizer
    from pricer.predict import PricePredictor

    job = _job(args, check=lambda p: checks.evaluate(args, p))  # --gpus N: test items sharded over N
    preset = job.preset
    adapter = None if args.base else _adapter(args, job)
    model = (load_finetuned(preset.base_model, adapter, preset.quant, args.revision) if adapter
             else load_model(preset.base_model, preset.quant))
    test = job.test_rows
    predictor = distributed.Sharded(PricePredictor(model, load_tokenizer(preset.base_model), stat=args.stat))
    title = f"{'Fine-tuned' if adapter else 'Base model'} {args.stat} price ({preset.name})"
    score(predictor, test, size=min(args.size or len(test), len(test)), title=title,
          meta={"preset": preset.name, "data": preset.prompts, "seed": args.seed,
                "model": f"{preset.base_model} + {adapter}" if adapter else preset.base_model})


def _adapter(args, job) -> str:
    """--adapter checked (a folder, a run or a Hub repo), else the newest finished run that fits; which and why said."""
    from pricer import distributed
    from pricer.runs import adapter_folder, choose_adapter, compatible

    if args.adapter:
        adapter = adapter_folder(args.adapter, args.revision)
        why = compatible(adapter, job.preset, job.prompts["train"]) if os.path.isdir(adapter) else None
        if why:
            raise PricerError(f"the adapter in {adapter} does not fit this evaluation: {why}. Pass the same "
                              "--preset and --set it was trained with, or another --adapter.")
        return adapter
    folder, why = choose_adapter(args.output_dir, job.preset, job.train_rows, args.max_steps, args.seed)
    if folder is None:
        raise PricerError(f"{why}: train first (the same --preset, --set and --max-steps), pass --adapter "
                          "PATH_OR_REPO, or --base for the untrained model")
    if distributed.is_main():
        print(f"pricer: {why}")
    return str(folder)


def human_template(args) -> None:
    """Write a human-guess CSV for the test items of --items (default: the preset's)."""
    from pricer.human import template_for_preset

    from pricer.files import check_folder

    if os.path.isdir(args.out):
        raise SettingError(f"--out {args.out} is a folder: give the CSV file to write, e.g. {args.out}/human.csv")
    check_folder(os.path.dirname(os.path.abspath(args.out)), "--out's folder")
    path = template_for_preset(args.out, size=args.size, preset=args.preset, items=args.items)
    print(f"pricer: wrote a {args.size:,}-row template to {path}; fill in the guess column")


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with its error messages (which quote what was typed) redacted."""

    def error(self, message):
        from pricer.env import redact

        super().error(redact(message))


def _debug_option(p) -> None:
    """--debug after the command too (`train ... --debug`), not only before it."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback of an error (also PRICER_DEBUG=1)")


def _settings_option(p) -> None:
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="preset values, e.g. --set train_rows=5000 lora_r=16 (repeatable)")


def _run_options(p, gpus: str) -> None:
    """The options `train` and `evaluate` share: which preset, where runs go, values, GPUs."""
    p.add_argument("--preset", default="tiny", help="tiny (CPU, embedded), smol (GPU, embedded), lite or full")
    p.add_argument("--output-dir", default="outputs", help="run folders: OUTPUT_DIR/<preset>-<timestamp>/")
    _settings_option(p)
    p.add_argument("--gpus", type=_positive, default=1, help=gpus)


def parser() -> argparse.ArgumentParser:
    """Every command and option."""
    parser = _Parser(prog="python -m pricer", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("data", help="make prompts from your items (--items), or write the embedded catalog")
    _debug_option(p)
    p.add_argument("--items", metavar="FOLDER", help="your products (.jsonl, .json or .csv; any of the course's "
                   "formats): their prompts go to --out (train / val / test JSONL)")
    p.add_argument("--out", required=True, help="folder for the prompts of --items; else for the catalog's "
                   "items/ and prompts-<cap>/")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--preset", default="tiny", help="whose tokenizer and summary cut the prompts use")
    _settings_option(p)
    for split, size in (("train", 4_000), ("val", 200), ("test", 400)):
        p.add_argument(f"--{split}", type=_positive, default=size, help=f"{split} items (default {size:,})")
    p.set_defaults(run=data)

    p = commands.add_parser("lab", help="execute the five notebooks in order and write report.html")
    _debug_option(p)
    p.add_argument("--preset", default="tiny", help="tiny (CPU, embedded default), smol, lite or full")
    p.add_argument("--runs-dir", default="runs", help="executed notebooks go to RUNS_DIR/<timestamp>/")
    p.add_argument("--fresh", action="store_true", help="start a new run instead of resuming")
    p.add_argument("--t4", action="store_true", help="rehearse a Colab T4 on a bigger GPU: 15 GB, no bf16")
    _settings_option(p)
    p.set_defaults(run=lab)

    p = commands.add_parser("train", help="QLoRA fine-tuning; rerun the same command to resume")
    _debug_option(p)
    _run_options(p, gpus="data-parallel over N GPUs of this machine (accelerate), same effective batch")
    p.add_argument("--max-steps", type=_positive, help="stop after N optimizer steps (a short trial run)")
    p.add_argument("--seed", type=int, default=42, help="training seed; another seed is another run")
    p.add_argument("--push", metavar="HUBNAME", help="also push checkpoints and the adapter to this private Hub repo")
    p.add_argument("--micro-batch", type=_positive, help="rows per forward pass (default: the largest that fits)")
    p.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="force gradient checkpointing on or off (default: only when memory needs it)")
    p.add_argument("--plain", action="store_true", help="the course's padded batches, no fused kernels")
    p.set_defaults(run=train)

    p = commands.add_parser("evaluate", help="expected-price evaluation of a trained adapter on the test split")
    _debug_option(p)
    _run_options(p, gpus="shard the test items over N GPUs of this machine, results gathered in order")
    p.add_argument("--adapter", help="adapter folder, run folder or Hub repo (default: the newest finished run "
                   "of this preset, data and --max-steps)")
    p.add_argument("--max-steps", type=_positive, help="pick the newest finished N-step trial run, not a full one")
    p.add_argument("--seed", type=int, help="pick only runs trained with this seed (default: any)")
    p.add_argument("--revision", help="with a Hub --adapter: the commit or branch to load (the course's REVISION)")
    p.add_argument("--base", action="store_true", help="the untrained base model, no adapter")
    p.add_argument("--size", type=_positive, help="test items (default: all)")
    p.add_argument("--stat", default="mean", choices=("mean", "median"), help="which summary of the distribution")
    p.set_defaults(run=evaluate)

    p = commands.add_parser("human-template", help="write a CSV of test products for people to price")
    _debug_option(p)
    p.add_argument("--out", required=True, help="the CSV to write")
    p.add_argument("--size", type=_positive, default=100, help="how many test products")
    p.add_argument("--preset", default="tiny", help="whose test items")
    p.add_argument("--items", metavar="PATH_OR_NAME", help="an items folder or Hub dataset instead of the preset's")
    p.set_defaults(run=human_template)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the command and run it at the edge (`pricer.edge`): exit 2 for what you can fix, 1 for a bug."""
    from pricer.edge import run_at_edge

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = [a for a in argv if a != "--debug"]  # what --gpus N relaunches on each process
    code = run_at_edge(lambda: _run(args), debug=args.debug)
    if code:
        raise SystemExit(code)


def _run(args) -> None:
    """Secrets loaded, the T4 rehearsal applied, PRICER_HOME checked, then the command."""
    from pricer.config import flag, pricer_home
    from pricer.env import load_secrets
    from pricer.files import check_folder
    from pricer.patches.bitsandbytes import without_hub_kernel

    load_secrets()  # HF_TOKEN etc. from .env / Colab, for the libraries that read os.environ
    without_hub_kernel()  # before bitsandbytes loads: no Hub download, nor its warning (pricer.patches)
    if flag("PRICER_T4"):  # as in a notebook's kernel: 15 GB and fp16, before any model loads
        from pricer.session import rehearse_t4

        rehearse_t4()
    check_folder(pricer_home(), "PRICER_HOME")  # converted models, the catalog, caches
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
