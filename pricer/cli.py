"""The command line: `python -m pricer <command>`.

    python -m pricer lab                      # the whole lab, tiny preset, offline (the main job)
    python -m pricer data --out data/catalog  # the embedded catalog as train / val / test folders
    python -m pricer train --preset lite      # QLoRA fine-tuning; the same command again resumes
    python -m pricer human-template --out human.csv   # test products for a class to price
"""

import argparse
import sys


def data(args) -> None:
    """Write the embedded catalog's items and prompts to a folder."""
    from pricer.catalog import write_catalog
    from pricer.config import get_preset

    preset = get_preset(args.preset)
    out = write_catalog(args.out, seed=args.seed, summary_tokens=preset.summary_tokens)
    print(f"pricer: catalog written to {out}/items and {out}/prompts-{preset.summary_tokens}")


def lab(args) -> None:
    """Execute the five notebooks and write the report (the README's first command)."""
    from pricer.lab import run_lab

    run_lab(args.preset, args.runs_dir, fresh=args.fresh)


def human_template(args) -> None:
    """Write a human-guess CSV for the preset's test items."""
    from pricer.human import template_for_preset

    path = template_for_preset(args.out, size=args.size, preset=args.preset)
    print(f"pricer: wrote a {args.size}-row template to {path}; fill in the guess column")


def main(argv: list[str] | None = None) -> None:
    """Parse the command and run it."""
    parser = argparse.ArgumentParser(prog="python -m pricer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("data", help="write the embedded catalog to a folder")
    p.add_argument("--out", required=True, help="folder to write items/ and prompts-<cap>/ into")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--preset", default="tiny", help="whose summary cap the prompts use")
    p.set_defaults(run=data)

    p = commands.add_parser("lab", help="execute the five notebooks in order and write report.html")
    p.add_argument("--preset", default="tiny", help="tiny (CPU, embedded default), lite or full")
    p.add_argument("--runs-dir", default="runs", help="executed notebooks go to RUNS_DIR/<timestamp>/")
    p.add_argument("--fresh", action="store_true", help="start a new run instead of resuming")
    p.set_defaults(run=lab)

    from pricer.train import add_train_arguments, run_cli

    p = commands.add_parser("train", help="QLoRA fine-tuning; rerun the same command to resume")
    add_train_arguments(p)
    p.set_defaults(run=run_cli)

    p = commands.add_parser("human-template", help="write a CSV of test products for people to price")
    p.add_argument("--out", required=True, help="the CSV to write")
    p.add_argument("--size", type=int, default=100, help="how many test products")
    p.add_argument("--preset", default="tiny", help="whose test items")
    p.set_defaults(run=human_template)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
