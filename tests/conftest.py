"""Shared fixtures: the embedded tokenizer and a tiny random Llama, both offline and quick."""

import pytest


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
