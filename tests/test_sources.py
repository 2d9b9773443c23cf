"""Names: one resolver tells the embedded default, folders and Hub ids apart; nothing is swapped silently."""

import json

import pytest

from pricer import sources
from pricer.config import EMBEDDED, HUB_MODEL, get_preset
from pricer.errors import SettingError


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("PRICER_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "hub_reachable", lambda: True)


@pytest.fixture
def no_network(monkeypatch):
    monkeypatch.delenv("PRICER_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "hub_reachable", lambda: False)


def test_hub_names_pass_through_online(online):
    assert sources.resolve(HUB_MODEL, "model") == HUB_MODEL
    assert sources.resolve("ed-donner/items_lite", "items") == "ed-donner/items_lite"


def test_pricer_offline_swaps_a_hub_name_for_the_embedded_default_and_says_so_once(monkeypatch, capsys):
    monkeypatch.setenv("PRICER_OFFLINE", "1")
    sources._announce.cache_clear()
    assert sources.resolve(HUB_MODEL, "model") == str(sources.embedded_model())
    sources.resolve(HUB_MODEL, "model")
    assert capsys.readouterr().out.count(repr(HUB_MODEL)) == 1
    preset = sources.resolve_preset(get_preset("lite"))
    assert dict(preset.requested) == {"base_model": HUB_MODEL, "items": "ed-donner/items_lite",
                                      "prompts": "ed-donner/items_prompts_lite"}
    assert sources.resolve_preset(preset) == preset  # resolving twice changes nothing


def test_an_unreachable_hub_is_an_error_saying_how_to_go_on_not_a_swap(no_network):
    with pytest.raises(SettingError, match="can't be reached.*PRICER_OFFLINE=1"):
        sources.resolve(HUB_MODEL, "model")


@pytest.mark.parametrize("name", ["./dta/prompts", "data/prompt", "~/nowhere-at-all", "/no/such/folder",
                                  "data/prompts/test.jsonl"])
def test_a_name_that_looks_like_a_path_must_exist_even_offline(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRICER_OFFLINE", "1")
    (tmp_path / "data").mkdir()
    with pytest.raises(SettingError, match="no such folder"):
        sources.resolve(name, "prompts")


def test_a_file_or_a_folder_of_the_wrong_kind_is_refused(tmp_path):
    (tmp_path / "rows.jsonl").write_text("{}\n")
    with pytest.raises(SettingError, match="is a file; give the folder"):
        sources.resolve(str(tmp_path / "rows.jsonl"), "prompts")
    with pytest.raises(SettingError, match="no config.json"):
        sources.resolve(str(tmp_path), "model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SettingError, match=r"holds no .jsonl, .json, .csv, .tsv files .*found nothing"):
        sources.resolve(str(tmp_path / "empty"), "items")
    (tmp_path / "sheet").mkdir()
    (tmp_path / "sheet" / "train.csv").write_text("title,price\n")
    assert sources.resolve(str(tmp_path / "sheet"), "items") == str((tmp_path / "sheet").resolve())
    with pytest.raises(SettingError, match=r"holds no .jsonl files .*found train.csv\).*pricer data --items"):
        sources.resolve(str(tmp_path / "sheet"), "prompts")  # prompts are pricer's own JSONL
    assert sources.resolve(str(tmp_path), "items") == str(tmp_path.resolve())


def test_embedded_prompts_follow_the_presets_cut_and_tokenizer(tmp_path, monkeypatch, tokenizer):
    monkeypatch.setenv("PRICER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sources, "_rows", lambda folder: {s: [{"summary": "Title: " + "word " * 80, "price": 9.99}]
                                                          for s in sources.ITEMS_SPLITS})
    monkeypatch.setattr(sources, "embedded_items", lambda: tmp_path)
    model = str(sources.embedded_model())
    short, long = (sources.resolve(EMBEDDED, "prompts", n, model) for n in (8, 40))
    assert short != long
    lengths = [len(tokenizer.encode(json.loads(open(f"{p}/train.jsonl").readline())["prompt"])) for p in (short, long)]
    assert lengths[0] < lengths[1]


def test_a_damaged_conversion_is_converted_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRICER_HOME", str(tmp_path))
    converted = []
    monkeypatch.setattr(sources, "convert_gguf", lambda gguf, out: converted.append(out) or out)
    monkeypatch.setattr(sources, "gguf_path", lambda: tmp_path / "x.gguf")
    folder = sources.embedded_model_dir()
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    (folder / sources.MARKER).write_text(json.dumps({"sizes": {"model.safetensors": 100}}))
    sources.embedded_model()
    assert converted == [folder] and "truncated" in capsys.readouterr().out
    (folder / "model.safetensors").write_bytes(b"x" * 100)
    sources.embedded_model()
    assert converted == [folder]  # a whole conversion is used as it is
