"""pricer.frontier: skipped in one line offline, a real client against a local fake API, keys kept secret.

No test reaches the internet: "unreachable" is a closed port on this machine, and the API is a
small HTTP server in a thread that answers like /chat/completions.
"""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import pricer.env as env
import pricer.frontier as frontier
from pricer.catalog import make_splits
from pricer.errors import PricerError
from pricer.frontier import FrontierPredictor, frontier_predictor, frontier_predictors, parse_price
from pricer.prompts import make_prompt

FAKE_KEY = "sk-test-0123456789abcdefSECRET"


LONG_KEY = "sk-proj-" + "Ab3xQ9" * 25  # 158 characters: longer than any cut an error message makes


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No real keys, no .env, results in a temporary folder, no retry waits."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(env, "DOTENV", tmp_path / "no.env")  # a developer's .env must not leak in
    monkeypatch.setattr(frontier.time, "sleep", lambda seconds: None)
    monkeypatch.setenv("PRICER_RESULTS", str(tmp_path / "results"))


def assert_hidden(text: str, key: str) -> None:
    """No piece of the key long enough to identify it, and no credential header, in `text`."""
    pieces = {key[i:i + env.MIN_PREFIX] for i in range(len(key) - env.MIN_PREFIX + 1)}
    assert not any(piece in text for piece in pieces), text
    assert "bearer" not in text.lower() and "authorization" not in text.lower(), text


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_api():
    """A local OpenAI-style API: records requests, answers with `reply` or fails with `status`."""
    state = {"requests": [], "reply": "$1,234.50", "status": 200, "body": None}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"].append({"path": self.path, "auth": self.headers["Authorization"], **payload})
            answer = {"message": {"role": "assistant", "content": state["reply"]}}
            body = state["body"] or {"choices": [answer]}
            data = json.dumps(body).encode()
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


def test_no_key_skips_with_exactly_one_line(capsys):
    assert frontier_predictor("gpt-4.1-nano") is None
    assert capsys.readouterr().out == "pricer: skipping gpt-4.1-nano (no OPENAI_API_KEY set)\n"
    assert frontier_predictor("claude-sonnet-4-5") is None
    assert "no ANTHROPIC_API_KEY set" in capsys.readouterr().out


def test_unreachable_api_skips_in_one_line_without_the_key(monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    assert frontier_predictor("gpt-4.1-nano", base_url=f"http://127.0.0.1:{closed_port()}/v1") is None
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pricer: skipping gpt-4.1-nano")
    assert "unreachable" in lines[0]
    assert FAKE_KEY not in captured.out + captured.err


def test_all_frontier_models_skipped_offline(capsys):
    assert frontier_predictors() == {}
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_a_call_that_cannot_connect_fails_with_one_clear_message(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    nowhere = f"http://127.0.0.1:{closed_port()}/v1"
    predictor = frontier_predictor("gpt-4.1-nano", base_url=nowhere, check=False)
    item = make_splits(seed=1, sizes={"train": 1, "val": 1, "test": 1})[2][0]
    with pytest.raises(PricerError, match="gpt-4.1-nano: could not reach") as failure:
        predictor(item)
    assert FAKE_KEY not in str(failure.value) and failure.value.__cause__ is None


def test_prices_come_back_through_the_tester_and_the_key_stays_secret(monkeypatch, capsys, fake_api,
                                                                      tmp_path):
    from pricer.evaluator import evaluate

    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    predictor = frontier_predictor("gpt-4.1-nano", base_url=fake_api["url"])
    test = make_splits(seed=1, sizes={"train": 1, "val": 1, "test": 10})[2]
    result = evaluate(predictor, test, size=10)
    assert result.guesses == [1234.5] * 10 and result.name == "GPT 4.1 Nano"
    sent = fake_api["requests"]
    assert len(sent) == 10 and {r["path"] for r in sent} == {"/v1/chat/completions"}
    assert {r["auth"] for r in sent} == {f"Bearer {FAKE_KEY}"}
    assert {r["model"] for r in sent} == {"gpt-4.1-nano"}
    prompts = sorted(r["messages"][0]["content"] for r in sent)
    assert prompts == sorted(frontier.PROMPT.format(summary=item.summary) for item in test)
    captured = capsys.readouterr()
    saved = "".join(p.read_text() for p in (tmp_path / "results").rglob("*") if p.is_file())
    assert saved and FAKE_KEY not in captured.out + captured.err + saved + repr(predictor)
    assert FAKE_KEY not in json.dumps(vars(predictor))


def test_prompt_rows_are_asked_about_their_summary(monkeypatch, fake_api):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    fake_api["reply"] = "I would guess around 40 dollars"
    predictor = frontier_predictor("gpt-4.1-nano", base_url=fake_api["url"])
    assert predictor({"prompt": make_prompt("Title: Kettle"), "completion": "30.00"}) == 40
    assert fake_api["requests"][0]["messages"][0]["content"].endswith("\n\nTitle: Kettle")


def test_refused_key_and_api_errors_are_clear_and_redacted(monkeypatch, fake_api):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    predictor = frontier_predictor("gpt-4.1-nano", base_url=fake_api["url"])
    row = {"prompt": make_prompt("Title: Kettle"), "completion": "30.00"}
    fake_api.update(status=401, body={"error": {"message": f"Incorrect API key provided: {FAKE_KEY}"}})
    with pytest.raises(PricerError, match=r"refused the key in OPENAI_API_KEY \(401\)") as failure:
        predictor(row)
    assert FAKE_KEY not in str(failure.value)
    fake_api.update(status=400, body={"error": {"message": f"model not found for {FAKE_KEY}"}})
    with pytest.raises(PricerError, match="HTTP 400: model not found for <OPENAI_API_KEY>"):
        predictor(row)
    calls = len(fake_api["requests"])
    fake_api.update(status=503, body={"error": {"message": "overloaded"}})
    with pytest.raises(PricerError, match="HTTP 503: overloaded"):
        predictor(row)
    assert len(fake_api["requests"]) - calls == frontier.RETRIES + 1  # transient: retried, then given up


def test_claude_goes_to_anthropic_with_its_own_key(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:1/v1")
    assert frontier.provider("claude-sonnet-4-5") == frontier.ANTHROPIC
    assert frontier.provider("gpt-5.1") == ("OPENAI_API_KEY", "http://localhost:1/v1")


@pytest.mark.parametrize("text, price", [("$1,299.99", 1299.99), ("Price: 45", 45.0), ("around $7.5.", 7.5),
                                         ("no idea", None), ("", None), (None, None)])
def test_parse_price(text, price):
    assert parse_price(text) == price


def test_predictor_name_gives_the_courses_chart_title():
    from pricer.evaluator import Tester

    predictor = FrontierPredictor("gpt-4.1-nano", "http://x/v1", "OPENAI_API_KEY")
    assert Tester.make_title(predictor) == "GPT 4.1 Nano"


def test_a_key_with_a_trailing_line_break_is_sent_clean_and_the_environment_left_alone(monkeypatch, fake_api):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY + "\n")  # pasted into .env or Colab with its newline
    predictor = frontier_predictor("gpt-4.1-nano", base_url=fake_api["url"])
    assert predictor({"prompt": make_prompt("Title: Kettle"), "completion": "30.00"}) == 1234.5
    assert fake_api["requests"][0]["auth"] == f"Bearer {FAKE_KEY}"
    assert env.os.environ["OPENAI_API_KEY"] == FAKE_KEY + "\n"  # read, not rewritten


def test_a_key_in_dotenv_is_used_without_writing_the_environment(monkeypatch, tmp_path, fake_api):
    (tmp_path / ".env").write_text(f'OPENAI_API_KEY="{FAKE_KEY}\\n"\n')  # a quoted value with \n in it
    monkeypatch.setattr(env, "DOTENV", tmp_path / ".env")
    predictor = frontier_predictor("gpt-4.1-nano", base_url=fake_api["url"])
    assert predictor({"prompt": make_prompt("Title: Kettle"), "completion": "30.00"}) == 1234.5
    assert fake_api["requests"][0]["auth"] == f"Bearer {FAKE_KEY}"
    assert "OPENAI_API_KEY" not in env.os.environ


@pytest.mark.parametrize("status, body", [
    (400, {"error": {"message": f"bad request: headers were {{'Authorization': 'Bearer {LONG_KEY}'}}"}}),
    (400, {"error": {"message": "x" * 150 + f" Bearer {LONG_KEY}"}}),  # the API's message is cut at 200
    (400, {"error": {"message": f"Invalid token {LONG_KEY}\n from Authorization: Bearer {LONG_KEY}"}}),
    (200, {"choices": []}),
    (200, {"choices": [{"message": {"content": ["a", "list"]}}]}),
    (200, {"unexpected": f"Bearer {LONG_KEY}"}),
    (500, {"error": {"message": f"upstream saw {LONG_KEY[:80]}"}}),  # retried, then given up: a prefix
])
def test_api_errors_show_no_key_and_no_header(monkeypatch, fake_api, status, body):
    monkeypatch.setenv("OPENAI_API_KEY", LONG_KEY + "\n")
    fake_api.update(status=status, body=body)
    predictor = frontier_predictor("gpt-4.1-nano", base_url=fake_api["url"])
    with pytest.raises(PricerError, match="gpt-4.1-nano: (HTTP|unexpected answer format)") as failure:
        predictor({"prompt": make_prompt("Title: Kettle"), "completion": "30.00"})
    assert_hidden(str(failure.value), LONG_KEY)
    assert failure.value.__cause__ is None and (failure.value.__context__ is None or failure.value.__suppress_context__)


def test_an_exception_that_quotes_the_header_is_not_quoted(monkeypatch, fake_api):
    """http.client's own message for a bad header holds it: "Invalid header value b'Bearer sk-...'"."""
    def urlopen(request, timeout):
        header = request.get_header("Authorization").encode() + b"\n"
        raise ValueError(f"Invalid header value {header!r}")

    monkeypatch.setenv("OPENAI_API_KEY", LONG_KEY)
    predictor = frontier_predictor("gpt-4.1-nano", base_url=fake_api["url"])
    monkeypatch.setattr(frontier.urllib.request, "urlopen", urlopen)
    with pytest.raises(PricerError, match=r"the request failed \(ValueError\)") as failure:
        predictor({"prompt": make_prompt("Title: Kettle"), "completion": "30.00"})
    assert_hidden(str(failure.value), LONG_KEY)


@pytest.mark.parametrize("key", ["sk-test-0123\n456789abcdef", "sk-test 0123456789abcdef", "sk-tést-0123456789abcdef"])
def test_a_key_no_header_can_carry_is_refused_by_name_before_sending(monkeypatch, fake_api, key):
    monkeypatch.setenv("OPENAI_API_KEY", key)
    predictor = frontier_predictor("gpt-4.1-nano", base_url=fake_api["url"])
    with pytest.raises(PricerError, match="OPENAI_API_KEY has a space, line break or non-ASCII") as failure:
        predictor({"prompt": make_prompt("Title: Kettle"), "completion": "30.00"})
    assert fake_api["requests"] == []
    assert_hidden(str(failure.value), key)
