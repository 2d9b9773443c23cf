"""What each command needs, checked before any work: GPUs, Hub names, folders, disk room, adapters.

    checks.gpus(args.gpus)                  # --gpus N on a machine with fewer: refused by name
    checks.train(args, preset)              # --micro-batch, --push (name, network, token), --output-dir
    checks.rows_and_room(args, job)         # batch size against the job's rows, disk room for the checkpoints
    checks.evaluate(args, preset)           # --base / --adapter / --revision, the results folder

Each refusal is a SettingError or ResourceError naming the option, the value and the remedy, so
`pricer.edge` prints it as one line with exit code 2 before a model loads or a process launches.
"""

import os

from pricer.errors import SettingError


def gpus(gpus: int) -> None:
    """--gpus N needs N GPUs here: refused by name, not N copies of a launcher's error."""
    if gpus > 1:
        import torch

        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus > have:
            raise SettingError(f"--gpus {gpus}, but this machine has {have} GPU(s): use --gpus {max(have, 1)} or "
                               "leave it out")


def hub_name(name: str, option: str) -> None:
    """A Hub repo name the Hub accepts, and a Hub that can be reached, before any work."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from pricer.sources import hub_reachable, offline_asked

    try:
        validate_repo_id(name)
    except HFValidationError as e:
        raise SettingError(f"{option} {name!r} is not a valid Hub repo name ({e}); use owner/name with letters, "
                           "digits, '-', '_' or '.'") from None
    if offline_asked() or not hub_reachable():
        why = "PRICER_OFFLINE=1 is set" if offline_asked() else "the Hub can't be reached (no network?)"
        raise SettingError(f"{option} {name} needs the Hugging Face Hub, and {why}: connect and rerun, or leave "
                           f"{option} out")


def train(args, preset) -> None:
    """What `train` needs besides the preset: a micro-batch that divides the batch, a Hub repo and token to push."""
    from pricer.env import secret
    from pricer.files import check_folder

    if args.micro_batch and preset.batch_size % args.micro_batch:
        fits = [m for m in range(1, preset.batch_size + 1) if preset.batch_size % m == 0]
        raise SettingError(f"--micro-batch {args.micro_batch} must divide batch_size={preset.batch_size} (the "
                           f"effective batch): use one of {', '.join(map(str, fits))}, or leave it out")
    if args.push:
        hub_name(args.push, "--push")
        if not secret("HF_TOKEN"):
            raise SettingError(f"--push {args.push} needs HF_TOKEN set to a write token (.env, the environment or "
                               "Colab secrets): create one at https://huggingface.co/settings/tokens")
    check_folder(args.output_dir, "--output-dir")


def rows_and_room(args, job) -> None:
    """After the names are resolved (a pricer.job.Job): a batch no larger than the training rows, and disk room
    for the checkpoints."""
    from pricer.files import check_folder

    preset, rows = job.preset, len(job.train_rows)
    if preset.batch_size > rows:
        raise SettingError(f"batch_size={preset.batch_size} is more than the {rows:,} training rows: set "
                           f"--set batch_size={min(rows, 32)} (at most {rows:,}), or give more rows")
    check_folder(args.output_dir, "--output-dir", need=run_bytes(preset))


def run_bytes(preset) -> float:
    """Disk a run needs, estimated: SAVE_LIMIT + 1 checkpoints (adapter + AdamW's two states, fp32) and the adapter."""
    from pricer.memory import ModelShape
    from pricer.train import SAVE_LIMIT

    params = ModelShape.from_pretrained(preset.base_model).lora_params(preset.lora_r, preset.target_modules)
    checkpoint = 3 * 4 * params + 30e6  # tokenizer files, trainer state, RNG
    return (SAVE_LIMIT + 1) * checkpoint + 4 * params


def evaluate(args, preset) -> None:
    """Before any work: --base or --adapter (not both), an adapter folder that holds one, a Hub name that can be
    fetched, a results folder to write into."""
    from pricer.evaluator import results_folder
    from pricer.files import check_folder
    from pricer.runs import adapter_folder
    from pricer.sources import looks_like_path

    if args.base and args.adapter:
        raise SettingError(f"--base scores the untrained model, so --adapter {args.adapter} would be ignored: "
                           "give one of them")
    if args.revision and not args.adapter:
        raise SettingError("--revision picks a commit of a Hub --adapter: give --adapter too, or leave it out")
    if args.adapter and (looks_like_path(args.adapter) or args.adapter.count("/") != 1):
        adapter_folder(args.adapter, args.revision)  # a run, adapter or checkpoint folder that holds one, or refused
    elif args.adapter:
        hub_name(args.adapter, "--adapter")
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise SettingError(f"--output-dir {args.output_dir} is a file, not a folder of runs: give the folder")
    check_folder(results_folder(), "the results folder (PRICER_RESULTS)")
