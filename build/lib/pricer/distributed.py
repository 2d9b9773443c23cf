"""Several GPUs of one machine: launching data-parallel runs, sharding work, doing things once.

    python -m pricer train --preset full --gpus 2      # relaunches itself with `accelerate launch`
    accelerate launch -m pricer train --preset full    # the same, launched by hand
    python -m pricer evaluate --gpus 2                 # test items sharded, results gathered in order

Each process holds its own 4-bit base on its own GPU (DDP). Everything here is a no-op in a
single process, so the same code runs on a laptop, a T4 or eight H200s.
"""

import contextlib
import os
import subprocess
import sys

# NVLink multicast (NVLS) can take a shared host's GPUs out of service: keep it off in every process.
SAFE_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def world_size() -> int:
    """Processes in this run (1 unless launched by accelerate / torchrun)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    """This process's index among all of them."""
    return int(os.environ.get("RANK", 0))


def local_rank() -> int:
    """This process's GPU on this machine."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """True in the one process that logs, saves and pushes."""
    return rank() == 0


def launch_command(argv: list[str], gpus: int) -> list[str]:
    """`accelerate launch` of `python -m pricer <argv>` on `gpus` processes (with --gpus removed)."""
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--gpus":
            skip = True
        elif not arg.startswith("--gpus="):
            args.append(arg)
    return accelerate_launch(gpus) + ["-m", "pricer", *args]


def accelerate_launch(processes: int) -> list[str]:
    """The `accelerate launch` prefix for `processes` processes on this machine (torchrun underneath)."""
    several = ["--multi_gpu"] if processes > 1 else []  # accelerate refuses --multi_gpu for one process
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes), *several,
            "--num_machines", "1", "--mixed_precision", "no"]


def relaunch(argv: list[str], gpus: int) -> None:
    """Run `python -m pricer <argv>` on `gpus` processes and exit with their status."""
    import torch

    if torch.cuda.is_available() and gpus > torch.cuda.device_count():
        raise SystemExit(f"--gpus {gpus}, but this machine has {torch.cuda.device_count()} GPU(s)")
    command = launch_command(argv, gpus)
    print(f"pricer: launching {gpus} processes: {' '.join(command[1:])}", flush=True)
    raise SystemExit(subprocess.call(command, env={**os.environ, **SAFE_ENV}))


def start(argv: list[str], gpus: int) -> None:
    """A command's first step: relaunch it on `gpus` processes (and exit), or join the group it runs in."""
    if gpus > 1 and world_size() == 1:
        relaunch(argv, gpus)
    init()


def init() -> None:
    """Join the process group when launched with several processes (a no-op otherwise)."""
    if world_size() > 1:
        for key, value in SAFE_ENV.items():
            os.environ.setdefault(key, value)
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())  # without GPUs: gloo over CPU processes (tests, smoke runs)


@contextlib.contextmanager
def main_first():
    """The main process runs the block first (e.g. creates the run folder), then the others do."""
    if world_size() == 1:
        yield
        return
    from accelerate import PartialState

    with PartialState().main_process_first():
        yield


def across_processes(predict, datapoints: list) -> list:
    """`predict` on this process's share (every world_size-th item); every process gets all, in order."""
    n = world_size()
    if n == 1:
        return predict(datapoints)
    import torch.distributed as dist

    shares = [None] * n
    dist.all_gather_object(shares, predict(datapoints[rank()::n]))
    merged = [None] * len(datapoints)
    for r, share in enumerate(shares):
        merged[r::n] = share
    return merged


class Sharded:
    """A batch predictor whose batches are split over every process and gathered back in order.

    The Tester sees one predictor with a world_size-times larger batch: every process runs the
    same Tester over the same items, and only the main one writes the cache and the result."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.batch_size = predictor.batch_size * world_size()
        self.__name__ = predictor.__name__
        self.cache_key = getattr(predictor, "cache_key", None)

    def __call__(self, datapoint):
        return self.predict_batch([datapoint])[0]

    def predict_batch(self, datapoints: list) -> list:
        return across_processes(self.predictor.predict_batch, datapoints)
