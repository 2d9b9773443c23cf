"""`userdata.get` as Colab has it: secrets from the JSON in PRICER_STANDIN_SECRETS, Colab's errors otherwise."""

import json
import os


class SecretNotFoundError(Exception):
    def __init__(self, key):
        super().__init__(f"Secret {key} does not exist.")


class NotebookAccessError(Exception):
    def __init__(self, key):
        super().__init__(f"Notebook does not have access to secret {key}")


def get(key):
    if not isinstance(key, str) or not key:
        raise ValueError("Please enter a valid secret name")
    secrets = json.loads(os.environ.get("PRICER_STANDIN_SECRETS", "{}"))
    if key not in secrets:
        raise SecretNotFoundError(key)
    if secrets[key] is None:
        raise NotebookAccessError(key)
    return secrets[key]
