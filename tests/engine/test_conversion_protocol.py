"""The converter's command line and progress-line protocol, defined once in engine.conversion."""

from __future__ import annotations

from engine import conversion


def test_every_event_kind_round_trips_and_plain_lines_are_log():
    for kind, fields in ((conversion.PROGRESS, {"step": "exporting", "fraction": 0.25}),
                         (conversion.RESULT, {"out": "/m/x", "variants": {"fp32": {}}}),
                         (conversion.ERROR, {"error": "hub_offline", "message": "offline", "hint": "later"})):
        event = conversion.parse_event(conversion.event_line(kind, **fields) + "\n")
        assert event == {"event": kind, **fields}
    for plain in ("", "Loading weights", "{not json", '{"no": "event"}', '{"event": "other"}', "[1, 2]"):
        assert conversion.parse_event(plain) is None


def test_the_command_line_carries_every_choice(tmp_path):
    request = conversion.ConversionRequest("org/model", "model", ("fp32", "int8"), trust_remote_code=True, force=True)
    command = conversion.converter_command(request, tmp_path, python="py")
    assert command[:3] == ["py", str(conversion.CONVERTER), "org/model"]
    assert command[command.index("--out") + 1] == str(tmp_path / "model")
    assert command[command.index("--variants") + 1] == "fp32,int8"
    assert {"--progress-jsonl", "--trust-remote-code", "--force"} <= set(command)
    plain = conversion.converter_command(conversion.ConversionRequest("org/model", "m", ("fp32",)), tmp_path)
    assert "--trust-remote-code" not in plain and "--force" not in plain
