import json
import logging
import subprocess
import sys

from engine.log import JsonFormatter, RedactingFilter, redact

ROOT = __import__("conftest").ROOT


def test_secrets_are_masked():
    assert "sk-abcdef123456" not in redact("Authorization: Bearer sk-abcdef123456")
    assert redact("calling with Bearer sk-abcdef123456") == "calling with Bearer ***"
    assert "hf_" in redact("token hf_abcdefghijklmnop") and "abcdefghijklmnop" not in redact("token hf_abcdefghijklmnop")
    assert redact("api_key=supersecretvalue and more") == "api_key=*** and more"
    assert redact("nothing to hide here") == "nothing to hide here"


def test_json_lines_with_extra_fields_and_redaction():
    record = logging.makeLogRecord({"name": "engine.x", "levelname": "INFO", "levelno": 20,
                                    "msg": "calling with api_key=%s", "args": ("abc123secret",), "doc": "a.pdf"})
    assert RedactingFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "calling with api_key=***" and line["doc"] == "a.pdf" and line["logger"] == "engine.x"


def test_cli_logs_json_lines_on_stderr(default_model, tmp_path):
    (tmp_path / "in.txt").write_text("one line\n")
    done = subprocess.run([sys.executable, "-m", "engine", "embed", "--in", str(tmp_path / "in.txt"), "--out",
                           str(tmp_path / "out.npy"), "--log-json", "--data-dir", str(default_model.parent.parent)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    assert any(line["logger"] == "engine.sessions" and "session ready" in line["msg"] for line in lines)
