"""Several processes: the relaunch command, the per-process batch, and sharded evaluation over real gloo groups."""

import json
import socket
import sys

import pytest

from pricer import distributed
from pricer.config import get_preset
from pricer.errors import PricerError
from pricer.memory import ModelShape

SHAPE = ModelShape(hidden=64, layers=2, intermediate=128, heads=4, kv_heads=2, vocab=1024)


def test_relaunch_command_runs_the_same_pricer_command_without_gpus():
    for gpus_args in (["--gpus", "2"], ["--gpus=2"]):
        command = distributed.launch_command(["train", "--preset", "full", *gpus_args, "--max-steps", "5"], 2)
        assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
        assert command[command.index("--num_processes") + 1] == "2"
        assert command[-7:] == ["-m", "pricer", "train", "--preset", "full", "--max-steps", "5"]
        assert not any(arg.startswith("--gpus") for arg in command)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_each_process_takes_its_share_of_the_effective_batch(world, monkeypatch):
    from pricer.train import Options, plan_setup

    monkeypatch.setenv("WORLD_SIZE", str(world))
    setup = plan_setup(SHAPE, get_preset("tiny", batch_size=16), [80] * 64, Options(budget_gb=8.0, micro_batch=2))
    assert setup.plan.micro_batch * setup.plan.accumulation * world == 16


def test_a_batch_that_does_not_split_over_the_processes_is_refused(monkeypatch):
    from pricer.train import Options, plan_setup

    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(PricerError, match="batch_size 16 can't be split evenly over 3 processes"):
        plan_setup(SHAPE, get_preset("tiny", batch_size=16), [80] * 64, Options(budget_gb=8.0))


class Halver:
    """A batch predictor that records what it was asked: the answer is half the true price."""

    __name__ = "halver"
    cache_key = "halver:v1"
    batch_size = 3

    def __init__(self):
        self.seen = []

    def predict_batch(self, rows):
        self.seen += [row["i"] for row in rows]
        return [float(row["completion"]) / 2 for row in rows]


def _process(rank: int, world: int, port: int, folder: str) -> None:
    """One process of a gloo group: gather a sharded list, then run a sharded Tester."""
    import os

    import torch.distributed as dist

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), PRICER_RESULTS=f"{folder}/results")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from pricer.evaluator import evaluate

    gathered = distributed.across_processes(lambda xs: [(x, distributed.rank()) for x in xs], list(range(11)))
    rows = [{"prompt": f"Title: thing {i}\n\nPrice is $", "completion": f"{10 + i}.00", "i": i} for i in range(10)]
    halver = Halver()
    result = evaluate(distributed.Sharded(halver), rows, size=10, title="sharded")
    with open(f"{folder}/rank{rank}.json", "w") as f:
        json.dump({"gathered": gathered, "seen": halver.seen, "guesses": result.guesses}, f)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sharded_evaluation_splits_the_work_and_writes_once(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_process, args=(2, _free_port(), str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:  # every process gets every answer, in input order, each from the process that owned it
        assert rank["gathered"] == [[x, x % 2] for x in range(11)]
        assert rank["guesses"] == [(10 + i) / 2 for i in range(10)]
    assert sorted(ranks[0]["seen"] + ranks[1]["seen"]) == list(range(10))  # each item predicted once
    assert set(ranks[0]["seen"]).isdisjoint(ranks[1]["seen"])
    saved = list((tmp_path / "results").glob("*.json"))
    cached = list((tmp_path / "results" / "cache").glob("*.jsonl"))
    assert len(saved) == 1 and len(cached) == 1  # the main process alone writes
    assert len(cached[0].read_text().splitlines()) == 10
