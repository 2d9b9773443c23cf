"""The lab on a CPU unlike this one: bitsandbytes' AVX512-BF16 branch, forced, whatever CPU runs the tests.

bitsandbytes asks `bitsandbytes.functional.has_avx512bf16()` when its CPU backend is imported, and on
a CPU with the flag tries to download a kernel from the Hub (and warns when it can't), sets every
Linear4bit to repack its weights on a CPU inference forward, and registers a native AVX512-BF16 gemv
for them. Each test runs a fresh Python in which a meta-path hook answers that probe right after
`bitsandbytes.functional` executes, so the branch is taken here too. Where the flag is forced on,
the native gemv (AVX512 code: SIGILL on a CPU without it) is replaced by the same product in torch,
computed from the repacked weights, so the path up to it is bitsandbytes' own on any x86-64 CPU.

A stand-in `kernels` package (the Hub's kernel loader) records any call, so "nothing downloaded"
is checked as well as "nothing said".
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_3 = ROOT / "notebooks" / "3_baselines_and_base_model.ipynb"

FORCE = """\
import copy, importlib.machinery, json, os, sys
FLAG = {flag}
EMULATED = []  # calls of the native gemv's stand-in: the AVX512-BF16 path ran


def report(**facts):
    with open(os.environ["FACTS"], "w") as f:
        json.dump(facts, f)


def emulated_gemv(F):
    def gemv_4bit(A, B, out=None, transposed_A=False, transposed_B=False, state=None):
        import torch
        EMULATED.append(tuple(A.shape))
        weight, plain = F._convert_weight_packed_for_cpu_inverse(B, copy.deepcopy(state))
        W = F.dequantize_4bit(weight, plain).to(torch.bfloat16)  # the native kernel computes in bf16
        result = torch.nn.functional.linear(A.to(torch.bfloat16), W).to(A.dtype)
        return out.copy_(result) if out is not None else result
    return gemv_4bit


class ForceFlag:
    def find_spec(self, name, path=None, target=None):
        if name != "bitsandbytes.functional":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.has_avx512bf16 = lambda: FLAG
            module.gemv_4bit = emulated_gemv(module)  # matmul_4bit reads F.gemv_4bit at each call
        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, ForceFlag())
"""

KERNELS = """\
import os


class Kernel:
    @staticmethod
    def gemm_4bit_forward(*args):
        raise AssertionError("the stand-in Hub kernel is never run here")


def get_kernel(repo, version=None):
    with open(os.environ["KERNELS_CALLED"], "a") as f:
        f.write(repo + "\\n")
    if os.environ.get("KERNELS_ONLINE"):
        return Kernel()
    raise ConnectionError("the Hub can't be reached")
"""


def python(code: str, tmp_path: Path, flag: bool, kernels: str = "absent", env: dict | None = None):
    """(return code, stdout + stderr, Hub kernels asked for, what it `report`ed) of `code` in a fresh Python
    with the flag forced.
    `kernels`: "absent" (no such package, as in the issue), "offline" (installed, the Hub unreachable) or
    "online" (installed, and the Hub answers)."""
    site = tmp_path / "site"
    if kernels != "absent":
        (site / "kernels").mkdir(parents=True, exist_ok=True)
        (site / "kernels" / "__init__.py").write_text(KERNELS)
    called, facts = tmp_path / "kernels_called.txt", tmp_path / "facts.json"
    environment = {k: v for k, v in os.environ.items() if k not in ("PRICER_HUB_KERNELS", "PYTHONPATH")}
    environment.update(PYTHONPATH=os.pathsep.join([str(ROOT), str(site)]), KERNELS_CALLED=str(called), FACTS=str(facts),
                       OMP_NUM_THREADS="1", **({"KERNELS_ONLINE": "1"} if kernels == "online" else {}), **(env or {}))
    script = tmp_path / "script.py"
    script.write_text(FORCE.format(flag=flag) + code)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=environment)
    asked = called.read_text().split() if called.exists() else []
    return done.returncode, done.stdout + done.stderr, asked, json.loads(facts.read_text()) if facts.exists() else {}


def kernel_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.search(r"kernel", line, re.IGNORECASE)]


def cells(notebook: Path, *marks: str) -> list[str]:
    """The source of the first code cell containing each mark, in the notebook's order."""
    sources = ["".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    found = [next((s for s in sources if mark in s), None) for mark in marks]
    assert None not in found, f"{notebook.name} has no code cell with {marks[found.index(None)]!r}: update the test"
    return found


def test_a_cpu_with_avx512_bf16_loads_and_runs_the_lab_model_without_a_word_about_kernels(tmp_path):
    """Notebook 3 as the lab runs it, up to its base-model cell (the tiny preset's 4-bit model, one answer):
    nothing about kernels is printed and nothing is downloaded, and the AVX512-BF16 path did run."""
    marks = ("PRESET = ", "lab = start(", "load_prompts(lab.prompts)", "def model_predict(", "base_model = load_model(")
    parameters, start, rows, predict, model = cells(NOTEBOOK_3, *marks)
    injected = f"PRESET, SETTINGS, LAB_DIR = 'tiny', {{}}, {str(tmp_path / 'lab')!r}  # as pricer.lab.inject does"
    notebook = "\n\n".join([parameters, injected, start, rows, predict, model])
    code = (f"{notebook}\n\nfrom pricer.patches.bitsandbytes import cpu_4bit_path\n"
            "report(emulated=len(EMULATED), path=cpu_4bit_path())\n")
    rc, output, asked, facts = python(code, tmp_path, flag=True, kernels="offline", env={"PRICER_EXECUTED": "1"})
    assert not kernel_lines(output), output[-3000:]
    assert asked == [], "code was downloaded from the Hub without being asked for"
    assert rc == 0, output[-3000:]  # -4: SIGILL, native AVX512 code ran on a CPU without it
    assert facts["emulated"] > 0, "the forced AVX512-BF16 path did not run: the test would prove nothing"
    assert "raw answer" in output  # the cell's own line: the model answered
    assert facts["path"].startswith("inference: bitsandbytes' own AVX512-BF16 kernel")


# Import bitsandbytes through the CLI's edge, then say which 4-bit path this process set up.
THROUGH_THE_CLI = """
import pricer.cli as cli
cli.data = lambda args: __import__("bitsandbytes")  # the command's work: whatever first imports bitsandbytes
cli.main(["data", "--out", "unused"])
from pricer.patches.bitsandbytes import cpu_4bit_path
report(path=cpu_4bit_path())
"""


@pytest.mark.parametrize("kernels", ["absent", "online"])  # "offline": the notebook test above
def test_the_cli_imports_bitsandbytes_silently_and_downloads_nothing(tmp_path, kernels):
    rc, output, asked, facts = python(THROUGH_THE_CLI, tmp_path, flag=True, kernels=kernels)
    assert not kernel_lines(output), output[-3000:]
    assert asked == [], "code was downloaded from the Hub without being asked for"
    assert rc == 0, output[-3000:]
    assert facts["path"].startswith("inference: bitsandbytes' own AVX512-BF16 kernel (the Hub kernel is fetched "
                                    "only with PRICER_HUB_KERNELS=1)")


def test_without_the_flag_bitsandbytes_dequantizes_and_the_path_says_so(tmp_path):
    rc, output, asked, facts = python(THROUGH_THE_CLI, tmp_path, flag=False, kernels="online")
    assert rc == 0 and not kernel_lines(output) and asked == [], output[-3000:]
    assert facts["path"].startswith("bitsandbytes dequantizes each 4-bit weight and multiplies with torch (no AVX512")


@pytest.mark.parametrize("kernels", ["online", "offline"])
def test_the_hub_kernel_is_fetched_only_when_asked_and_then_as_bitsandbytes_ships(tmp_path, kernels):
    """PRICER_HUB_KERNELS=1: bitsandbytes' own behaviour, its download and (when that fails) its warning."""
    rc, output, asked, facts = python(THROUGH_THE_CLI, tmp_path, flag=True, kernels=kernels,
                                      env={"PRICER_HUB_KERNELS": "1"})
    assert rc == 0, output[-3000:]
    assert asked == ["kernels-community/quantization-bitsandbytes"]
    if kernels == "online":
        assert facts["path"].startswith("inference: the Hub kernel kernels-community/quantization-bitsandbytes")
        assert not kernel_lines(output)
    else:
        assert "Failed to load CPU gemm_4bit_forward from kernels-community: the Hub can't be reached" in output
        assert "(PRICER_HUB_KERNELS=1, but the Hub kernel did not load)" in facts["path"]


def test_the_run_record_and_the_report_say_which_cpu_path_ran(tmp_path):
    """A finished training run records this process's CPU 4-bit path; the lab's report says it once."""
    import html

    import bitsandbytes  # noqa: F401  (loaded, as training loads it)

    from pricer.evaluator import evaluate
    from pricer.patches.bitsandbytes import cpu_4bit_path
    from pricer.report import write_report
    from pricer.runs import Run, finish_run, read_record, write_record

    run_dir = tmp_path / "outputs" / "tiny-2026-12-03_10.00.00"
    run_dir.mkdir(parents=True)
    identity = {"preset": {"name": "tiny", "base_model": "embedded"}, "max_steps": None, "data": "ab", "seed": 42}
    write_record(run_dir, identity=identity, status="running")  # a record of the shape runs.record_problem reads
    finish_run(Run(run_dir, identity), steps=1)
    expected = cpu_4bit_path()  # this CPU's answer; the forced branches' words are checked above
    assert read_record(run_dir)["cpu_4bit"] == expected
    evaluate(lambda row: 12.0, [{"prompt": f"p{i}", "completion": str(10 + i)} for i in range(3)],
             results_dir=tmp_path / "results")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert page.count("4-bit layers on this CPU") == (expected is not None)  # on a GPU: not a CPU matter
    if expected:
        assert f"4-bit layers on this CPU: {html.escape(expected)}." in page
