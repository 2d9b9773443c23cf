"""pricer.env: secrets read without side effects, and never printed in any form they can take."""

import base64
import html
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import pricer.env as env
from pricer.env import load_secrets, redact, secret

KEY = "hf_q8Zr2LmWx7Tb/Kp+Nc4Vy=Hd9Fs3Jg6Ua1"  # "/", "+", "=": URL-encoding and JSON writers change them
LONG = "sk-proj-" + "Zq7Wm2Xr9Tb4" * 12  # 152 characters, cut by `{e!r:.80}`


@pytest.fixture(autouse=True)
def keys(monkeypatch, tmp_path):
    """The keys as a .env or Colab often holds them (a trailing line break), and no other .env."""
    for name in env.SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(env, "DOTENV", tmp_path / "no.env")
    monkeypatch.setenv("HF_TOKEN", KEY + "\n")
    monkeypatch.setenv("OPENAI_API_KEY", LONG + "\n")


def leaked(text: str, key: str) -> bool:
    """Whether any piece of the key long enough to identify it is in the text."""
    return any(key[i:i + env.MIN_PREFIX] in text for i in range(len(key) - env.MIN_PREFIX + 1))


def header_error(key: str) -> ValueError:
    """What http.client raises for a key with its line break: the header is in the message."""
    return ValueError(f"Invalid header value {('Bearer ' + key + chr(10)).encode()!r}")


@pytest.mark.parametrize("key", [KEY, LONG])
@pytest.mark.parametrize("form", [
    lambda k: k, lambda k: repr(k + "\n"), lambda k: repr(("Bearer " + k + "\n").encode()),
    lambda k: repr(header_error(k)), lambda k: str([header_error(k)]), lambda k: json.dumps({"auth": k}),
    lambda k: json.dumps({"auth": k}).replace("/", "\\/"), lambda k: json.dumps(repr(k + "\n")),
    lambda k: "https://x/?token=" + urllib.parse.quote(k, safe=""), lambda k: urllib.parse.quote_plus(k),
    lambda k: html.escape(f"<td>{k!r}</td>"),
], ids=["verbatim", "repr", "bytes", "exception", "in-a-list", "json", "json-slash", "json-of-repr",
        "url", "url-plus", "html"])
def test_every_form_of_a_secret_is_hidden_whole_and_cut_anywhere(key, form):
    text = f"error: {form(key)} (and more)"
    assert leaked(text, key)  # the form does hold the key
    assert not leaked(redact(text), key)
    start = text.index(form(key))
    for cut in range(start, len(text) + 1):  # f"{e!r:.80}" and friends: cut at every point
        assert not leaked(redact(text[:cut]), key), text[:cut]
    assert "<HF_TOKEN>" in redact(text) or "<OPENAI_API_KEY>" in redact(text)


def test_the_classic_leak_repr_cut_at_80():
    text = f"unexpected answer format ({header_error(LONG)!r:.80})"
    assert LONG[:30] in text and not leaked(redact(text), LONG)
    assert redact(text).startswith("unexpected answer format (ValueError(\"Invalid header value b'Bearer <OPENAI_API_KEY>")


def test_ansi_colours_inside_a_key_do_not_hide_it_and_the_rest_keeps_its_colours():
    red, reset = "\x1b[0;31m", "\x1b[0m"
    coloured = f"{red}ValueError{reset}: Bearer {KEY[:12]}\x1b[1;32m{KEY[12:]}{reset} was refused"
    out = redact(coloured)
    assert not leaked(out.replace("\x1b[1;32m", "").replace(reset, ""), KEY)
    assert out.startswith(f"{red}ValueError{reset}: Bearer <HF_TOKEN>") and out.endswith(" was refused")


ECHOES = {"without its first 5": lambda k: k[5:], "a middle piece": lambda k: k[7:19],
          "base64": lambda k: base64.b64encode(k.encode()).decode(),
          "basic auth": lambda k: base64.b64encode(f"user:{k}".encode()).decode(),
          "basic auth, url-safe": lambda k: base64.urlsafe_b64encode(f"ab:{k}".encode()).decode(),
          "upper case": str.upper, "lower case": str.lower, "swapped case": str.swapcase,
          "spaced out": lambda k: " ".join(k), "hex": lambda k: k.encode().hex()}


def shown(text: str, key: str) -> bool:
    """Whether an 8-character piece of any echoed form of the key is in the text (base64's ends excepted: they
    mix in the bytes around the key)."""
    squeezed = "".join(text.split()).lower()
    for name, form in ECHOES.items():
        coded = "".join(form(key).split()).lower()
        if "base64" in name or "basic" in name:
            coded = coded[8:-8]
        pieces = [coded[i:i + env.MIN_PREFIX] for i in range(len(coded) - env.MIN_PREFIX + 1)]
        if any(p in squeezed for p in pieces):
            return True
    return False


@pytest.mark.parametrize("key", [KEY, LONG])
@pytest.mark.parametrize("form", list(ECHOES))
def test_pieces_encodings_and_cases_of_a_secret_are_hidden(key, form):
    text = f"Incorrect API key provided: {ECHOES[form](key)}. You can find your key at ..."
    assert shown(text, key) and not shown(redact(text), key), redact(text)
    assert redact(text).endswith("You can find your key at ...")


def test_a_dotenv_key_is_hidden_even_when_the_file_cant_be_parsed(tmp_path, monkeypatch):
    wandb = "0123456789abcdef0123456789abcdef01234567"
    (tmp_path / ".env").write_bytes(f'WANDB_API_KEY="{wandb}\nOTHER=1\n'.encode())  # unterminated quote
    monkeypatch.setattr(env, "DOTENV", tmp_path / ".env")
    with pytest.raises(env.DataError, match="line 1"):
        secret("WANDB_API_KEY")
    assert not leaked(redact(f"wandb says {wandb[4:]}"), wandb)


class Echo(BaseHTTPRequestHandler):
    """An OpenAI-style API that refuses every key and echoes it back, in the form the path names, in the
    error's message, another field and a header."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        form, status = self.path.strip("/").split("/")[:2]  # /<form>/<status>/chat/completions
        echoed = list(ECHOES.values())[int(form)](self.headers["Authorization"].removeprefix("Bearer "))
        body = json.dumps({"error": {"type": "invalid_request_error", "message": f"Incorrect API key: {echoed}",
                                     "param": echoed}}).encode()
        self.send_response(int(status))
        self.send_header("WWW-Authenticate", echoed[:100].encode("ascii", "replace").decode())
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.parametrize("status", [400, 401, 404, 500])
@pytest.mark.parametrize("form", list(ECHOES))
def test_an_api_that_echoes_the_key_in_any_form_never_gets_it_printed(echo, monkeypatch, form, status):
    from pricer import frontier
    from pricer.errors import PricerError

    monkeypatch.setattr(frontier, "RETRIES", 0)
    predictor = frontier.FrontierPredictor("gpt-4.1-nano", f"{echo}/{list(ECHOES).index(form)}/{status}",
                                           "OPENAI_API_KEY")
    with pytest.raises(PricerError) as info:
        predictor({"prompt": "Title: a speaker\n", "completion": "12.00"})
    message = str(info.value)
    assert str(status) in message and not shown(message, LONG), message
    if status not in (401, 403):
        assert "invalid_request_error" in message  # the status, the error's type and its message, redacted


def test_ordinary_text_is_left_as_it_is():
    text = "Price is $349.99\nhf_ and sk- are key prefixes; Bearer tokens go in headers"
    assert redact(text) == text


def test_secret_reads_without_writing_the_environment_and_load_secrets_is_the_explicit_step(tmp_path,
                                                                                           monkeypatch):
    dotenv = tmp_path / ".env"
    dotenv.write_text('WANDB_API_KEY="0123456789abcdef0123456789abcdef01234567\\n"\nOTHER_SETTING=on\n')
    monkeypatch.setattr(env, "DOTENV", dotenv)
    monkeypatch.delenv("OTHER_SETTING", raising=False)
    wandb = "0123456789abcdef0123456789abcdef01234567"
    assert secret("WANDB_API_KEY") == wandb and secret("HF_TOKEN") == KEY and secret("ANTHROPIC_API_KEY") is None
    assert "WANDB_API_KEY" not in env.os.environ and env.os.environ["HF_TOKEN"] == KEY + "\n"
    assert not leaked(redact(f"wandb: {wandb[:20]}"), wandb)  # a key only in .env is hidden too
    assert load_secrets() == ["HF_TOKEN", "WANDB_API_KEY", "OPENAI_API_KEY"]  # names, never values
    assert env.os.environ["WANDB_API_KEY"] == wandb and env.os.environ["HF_TOKEN"] == KEY  # stripped
    assert env.os.environ["OTHER_SETTING"] == "on"  # the rest of .env, as before
    monkeypatch.delenv("WANDB_API_KEY")


def test_an_executed_notebooks_outputs_and_error_are_redacted(tmp_path):
    """A real kernel: the key printed, shown as HTML and JSON, and in an exception's evalue and
    (ANSI-coloured) traceback, as http.client would put it there."""
    import nbformat

    from pricer import lab

    cells = [nbformat.v4.new_code_cell("X = 1", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell(
                 "import os\nfrom IPython.display import HTML, JSON, display\nkey = os.environ['HF_TOKEN']\n"
                 "print(key, repr(key), f'{key!r:.20}')\ndisplay(HTML(f'<b>{key}</b>'), JSON({'token': key}))"),
             nbformat.v4.new_code_cell(
                 "def send(header):\n    raise ValueError(f'Invalid header value {header.encode()!r:.40}')\n"
                 "send('Bearer ' + key)")]
    source, target = tmp_path / "leak.ipynb", tmp_path / "out" / "leak.ipynb"
    target.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=cells), source)
    with pytest.raises(Exception, match="ValueError") as failure:  # what the CLI would print
        lab.execute(source, target, {"NOTE": f"typed by mistake: {KEY}"}, timeout=120)  # the parameters cell too
    assert "<HF_TOKEN>" in str(failure.value) and not leaked(str(failure.value), KEY)
    saved = target.read_text(encoding="utf-8")
    error = nbformat.read(target, as_version=4).cells[-1].outputs[0]
    assert error.output_type == "error" and "<HF_TOKEN>" in error.evalue
    assert any("<HF_TOKEN>" in line for line in error.traceback)
    assert "<HF_TOKEN>" in saved and not leaked(saved, KEY)


def test_a_report_shows_no_secret(tmp_path):
    from pricer.evaluator import evaluate
    from pricer.report import write_report

    rows = [{"prompt": f"p{i}", "completion": str(10 + i)} for i in range(5)]
    evaluate(lambda row: 12.0, rows, title=f"leaky {LONG[:60]} run", results_dir=tmp_path / "results")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "leaky" in page and "<OPENAI_API_KEY>" in page
    assert not leaked(page, LONG)
