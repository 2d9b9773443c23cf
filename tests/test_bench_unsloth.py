"""The training bench's Unsloth comparison: which configuration counts as its fastest T4 setting, how names
are read, and what the offline site folders leave out (the GPU run itself is bench/README.md's)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import train_throughput  # noqa: E402
import unsloth_arm  # noqa: E402
import unsloth_env  # noqa: E402


def test_fastest_t4_setting_skips_failures_oversized_peaks_and_other_dtypes():
    def arm(precision, s_per_step, tok_per_s, peak_gb):
        return {"precision": precision, "s_per_step": s_per_step, "tok_per_s": tok_per_s, "peak_gb": peak_gb}

    results = {"unsloth_padded_nockpt_bf16": arm("bf16", 0.15, 21000, 14.6),
               "unsloth_padded_bf16": arm("bf16", 0.24, 13250, 4.1), "unsloth_auto_bf16": arm("bf16", 1.06, 3001, 3.7),
               "unsloth_free_bf16": {"precision": "bf16", "error": "exit 1: ..."},
               "unsloth_padded_fp16": arm("fp16", 0.10, 31000, 4.0), "ours_bf16": arm("bf16", 0.12, 26500, 11.1)}
    assert unsloth_arm.fastest(results, "bf16", 14.0) == "unsloth_padded_bf16"
    assert unsloth_arm.fastest(results, "bf16") == "unsloth_padded_nockpt_bf16"
    summary = train_throughput.against_unsloth(results, ["bf16"])  # ratios of real tokens per second
    assert summary["speedup_vs_unsloth_t4_bf16"] == 2.0
    assert summary["speedup_vs_unsloth_recommended_bf16"] == 8.83


def test_configuration_names_say_what_they_set_and_unknown_ones_are_refused():
    assert unsloth_arm.parse("unsloth_padded_nockpt_drop_fp16") == {
        "padding": "padded", "checkpointing": False, "dropout": 0.1, "precision": "fp16"}
    assert unsloth_arm.parse("unsloth_auto_bf16")["checkpointing"] is True
    with pytest.raises(SystemExit, match="unsloth_<auto|padded|free>"):
        unsloth_arm.parse("unsloth_padded_nockp_bf16")


def test_site_folder_keeps_the_gpu_machines_bitsandbytes_and_drops_the_web_app():
    assert not unsloth_env.stripped("bitsandbytes/libbitsandbytes_cuda130.so")
    assert not unsloth_env.stripped("bitsandbytes/libbitsandbytes_cpu.so")
    assert unsloth_env.stripped("bitsandbytes/libbitsandbytes_cuda128.so")
    assert unsloth_env.stripped("studio/backend/main.py")
    assert not unsloth_env.stripped("unsloth/models/llama.py")


def test_a_file_a_wheel_lists_but_the_folder_lacks_is_named(tmp_path):
    record = tmp_path / "demo-1.0.dist-info" / "RECORD"
    record.parent.mkdir()
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "__init__.py").write_text("")
    record.write_text("demo/__init__.py,sha256=x,0\ndemo/kernels.py,sha256=y,1\n"
                      "studio/app.py,sha256=z,2\n../../bin/demo,sha256=w,3\ndemo-1.0.dist-info/RECORD,,\n")
    assert unsloth_env.incomplete(tmp_path) == {"demo-1.0.dist-info": ["demo/kernels.py"]}
