"""DeepSeek-OCR and HunyuanOCR back-ends: the OpenAI-compatible client against a vLLM-like fake
(tests/servers/fake_openai_chat.py), output cleaning, and the transformers path end to end with our
own server (engine.ocr.vlm_server) in the VLM environment (.venv-vlm, transformers 5, created here
when missing) running tiny random-weight models on the CPU: Idefics3, and DeepSeek-OCR 2 and
HunYuanVL through their native transformers classes, driven through the back-ends and the ingest
pipeline with a real scanned PDF page."""

from __future__ import annotations

import base64
import io
import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from conftest import shared_data
from PIL import Image
from servers.base import Action
from servers.fake_openai_chat import FakeOpenAIChat

from engine.errors import OCRAuthError, OCRServiceError, OCRUnavailableError
from engine.ocr import BACKENDS, vlm, vlm_env
from engine.ocr.base import PageImage
from engine.ocr.deepseek import RECIPE as DEEPSEEK_RECIPE
from engine.ocr.deepseek import DeepSeekOCR
from engine.ocr.hunyuan import DOC_PARSE_PROMPT, HunyuanOCR
from engine.ocr.vlm import clean_vlm_output, find_looping_tail, normalise_base_url, strip_grounding
from engine.ocr.vlm_server import (
    ChatRequest,
    RequestError,
    check_context,
    finish,
    plain_prompt,
    sampling_from,
    support_problem,
    to_hf_messages,
)

DEEPSEEK = "deepseek-ai/DeepSeek-OCR-2"
HUNYUAN = "tencent/HunyuanOCR"


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith(("STUDIO_DEEPSEEK_OCR_", "STUDIO_HUNYUAN_OCR_", "STUDIO_OCR_")):
            monkeypatch.delenv(name)


def page_image(number: int = 1, size: tuple[int, int] = (160, 100)) -> PageImage:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, format="PNG")
    return PageImage(number=number, png=buffer.getvalue(), width_px=size[0], height_px=size[1], dpi=200)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- output cleaning (pure) -------------------------------------------------------------------------
GROUNDED = (
    "<|ref|>title<|/ref|><|det|>[[40, 30, 960, 80]]<|/det|>\n# Quarterly report\n\n"
    "<|ref|>text<|/ref|><|det|>[[40, 100, 960, 300]]<|/det|>\nRevenue grew by 4 %.\n\n"
    "<|ref|>image<|/ref|><|det|>[[40, 320, 500, 700]]<|/det|>\n\n"
    "<|ref|>table<|/ref|><|det|>[[40, 720, 960, 900]]<|/det|>\n<table><tr><td>Q1</td><td>4</td></tr></table>"
    "<｜end▁of▁sentence｜>"
)


def test_grounding_tags_are_stripped_and_markdown_kept():
    assert strip_grounding(GROUNDED) == (
        "# Quarterly report\n\nRevenue grew by 4 %.\n\n<table><tr><td>Q1</td><td>4</td></tr></table>"
    )


def test_grounded_ocr_mode_keeps_the_recognised_text():
    raw = "<|ref|>Hello world<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n<|ref|>Second line<|/ref|><|det|>[[5, 6, 7, 8]]<|/det|>"
    assert strip_grounding(raw) == "Hello world\nSecond line"


def test_a_tag_cut_off_by_the_cap_is_dropped():
    assert strip_grounding("Body text.\n<|ref|>text<|/ref|><|det|>[[12, 40") == "Body text."


def test_looping_tail_is_found_even_when_cut_mid_unit():
    text = "Intro paragraph.\n" + "| 0 | 0 |\n" * 50 + "| 0 |"
    loop = find_looping_tail(text, min_repeats=3, min_chars=30)
    assert loop is not None and loop.period == len("| 0 | 0 |\n")
    assert text[: loop.start + loop.period] == "Intro paragraph.\n| 0 | 0 |"  # one copy kept
    assert find_looping_tail("A normal page of text, with no loop at its end.", min_repeats=3, min_chars=30) is None


def test_capped_looping_output_is_cut_and_degraded():
    raw = "# Title\n\nSome text.\n\n" + "the same sentence again. " * 200
    cleaned = clean_vlm_output(raw, "length", 6144)
    assert cleaned.text == "# Title\n\nSome text.\n\nthe same sentence again."
    assert cleaned.degraded
    assert any("max-token cap (6144" in note for note in cleaned.notes)
    assert any("repetition loop cut" in note and "repeated 200 times" in note for note in cleaned.notes)


def test_a_legitimate_short_repetition_survives_when_generation_stopped():
    raw = "Signature: " + "_" * 40 + "\n\nTotal ........ 12"
    cleaned = clean_vlm_output(raw + "\n" + "-" * 60, "stop", 6144)
    assert cleaned.text.endswith("-" * 60) and not cleaned.degraded
    long_loop = clean_vlm_output("Start.\n" + "ha" * 400, "stop", 6144)  # a long loop is cut even without the cap
    assert long_loop.text == "Start.\nha" and long_loop.degraded


def test_base_url_forms():
    assert normalise_base_url("http://gpu:8000/v1/") == normalise_base_url("http://gpu:8000") == "http://gpu:8000"


# --- requests against a vLLM-like server -------------------------------------------------------------
def test_deepseek_request_follows_the_recipe():
    image = page_image()
    with FakeOpenAIChat(models=(DEEPSEEK,), answer=GROUNDED) as fake:
        result = DeepSeekOCR(url=fake.url + "/v1").recognize(image)
        (body,) = fake.chat_bodies()
    assert result.text.startswith("# Quarterly report") and "<|" not in result.text and not result.degraded
    assert body["model"] == DEEPSEEK
    (message,) = body["messages"]  # no system message
    image_part, text_part = message["content"]
    assert message["role"] == "user" and image_part["type"] == "image_url"
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,")
    assert base64.b64decode(image_part["image_url"]["url"].split(",", 1)[1]) == image.png
    assert text_part == {"type": "text", "text": "<|grounding|>Convert the document to markdown."}
    assert body["temperature"] == 0.0 and body["skip_special_tokens"] is False and body["stream"] is False
    assert body["vllm_xargs"] == {"ngram_size": 30, "window_size": 90, "whitelist_token_ids": [128821, 128822]}
    assert body["max_tokens"] == DEEPSEEK_RECIPE.default_max_tokens == 6144


def test_hunyuan_request_follows_the_recipe_and_the_token_caps(monkeypatch):
    with FakeOpenAIChat(models=(HUNYUAN,), answer="<table><tr><td>1</td></tr></table>") as fake:
        HunyuanOCR(url=fake.url).recognize(page_image())
        monkeypatch.setenv("STUDIO_OCR_MAX_TOKENS", "2048")
        HunyuanOCR(url=fake.url).recognize(page_image())
        monkeypatch.setenv("STUDIO_HUNYUAN_OCR_MAX_TOKENS", "1000")
        HunyuanOCR(url=fake.url).recognize(page_image())
        bodies = fake.chat_bodies()
    system, user = bodies[0]["messages"]
    assert system == {"role": "system", "content": ""}
    assert user["content"][0]["type"] == "image_url" and user["content"][1] == {"type": "text", "text": DOC_PARSE_PROMPT}
    assert bodies[0]["temperature"] == 0.0 and bodies[0]["top_k"] == 1 and bodies[0]["repetition_penalty"] == 1.0
    assert "vllm_xargs" not in bodies[0] and "skip_special_tokens" not in bodies[0]
    assert [b["max_tokens"] for b in bodies] == [8192, 2048, 1000]


def test_prompt_override():
    with FakeOpenAIChat(models=(DEEPSEEK,)) as fake:
        DeepSeekOCR(url=fake.url, prompt="Free OCR.").recognize(page_image())
        assert fake.chat_bodies()[0]["messages"][0]["content"][1]["text"] == "Free OCR."


def test_a_looping_answer_is_cut_and_the_page_marked_degraded():
    loop = "# Invoice\n\nItem | Qty\n" + "| 0 | 0 | 0 |\n" * 500
    with FakeOpenAIChat(models=(DEEPSEEK,), answer=loop, finish_reason="length") as fake:
        result = DeepSeekOCR(url=fake.url, max_tokens=1500).recognize(page_image(7))
    assert result.text == "# Invoice\n\nItem | Qty\n| 0 | 0 | 0 |"
    assert result.degraded and len(result.notes) == 2 and "1500 tokens" in result.notes[0]


def test_server_down_is_a_clear_error():
    url = f"http://127.0.0.1:{free_port()}"
    backend = DeepSeekOCR(url=url)
    availability = backend.availability()
    assert not availability.available and url in availability.reason and "vllm serve" in availability.hint
    with pytest.raises(OCRServiceError) as caught:
        backend.recognize(page_image())
    assert f"Cannot reach the DeepSeek-OCR server at {url}" in caught.value.message
    assert "STUDIO_DEEPSEEK_OCR_URL" in caught.value.hint


def test_timeout_is_a_clear_error():
    with FakeOpenAIChat(models=(HUNYUAN,)) as fake:
        fake.queue(Action(200, delay=3.0))
        started = time.monotonic()
        with pytest.raises(OCRServiceError) as caught:
            HunyuanOCR(url=fake.url, timeout_s=0.5).recognize(page_image())
    assert time.monotonic() - started < 2.5
    assert "did not answer within 0.5 s" in caught.value.message and "STUDIO_HUNYUAN_OCR_TIMEOUT_S" in caught.value.hint


def test_availability_checks_the_served_model():
    with FakeOpenAIChat(models=("some/other-model",)) as fake:
        availability = DeepSeekOCR(url=fake.url).availability()
        assert not availability.available and "some/other-model" in availability.reason
        assert availability.hint == "set STUDIO_DEEPSEEK_OCR_MODEL=some/other-model"
        with pytest.raises(OCRServiceError, match="HTTP 404") as caught:
            DeepSeekOCR(url=fake.url).recognize(page_image())
        assert "STUDIO_DEEPSEEK_OCR_MODEL" in caught.value.hint
    with FakeOpenAIChat(models=(DEEPSEEK,)) as fake:
        assert DeepSeekOCR(url=fake.url).availability().available


def test_api_key():
    with FakeOpenAIChat(models=(DEEPSEEK,), api_key="vllm-secret") as fake:
        assert not DeepSeekOCR(url=fake.url).availability().available
        with pytest.raises(OCRAuthError) as caught:
            DeepSeekOCR(url=fake.url).recognize(page_image())
        assert "STUDIO_DEEPSEEK_OCR_API_KEY" in caught.value.hint
        assert DeepSeekOCR(url=fake.url, api_key="vllm-secret").recognize(page_image()).text == "# Page\n\nSome text."
        assert fake.requests[-1].headers["authorization"] == "Bearer vllm-secret"


def test_context_overflow_points_at_the_cap():
    message = "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens."
    with FakeOpenAIChat(models=(DEEPSEEK,)) as fake:
        fake.queue(Action(400, {"error": {"message": message, "type": "BadRequestError", "code": 400}}))
        with pytest.raises(OCRServiceError, match="maximum context length") as caught:
            DeepSeekOCR(url=fake.url).recognize(page_image())
    assert "STUDIO_OCR_MAX_TOKENS" in caught.value.hint


# --- without a server: the local transformers path's prerequisites ---------------------------------
def test_registered_as_remote_backends():
    assert BACKENDS["deepseek-ocr"] is DeepSeekOCR and BACKENDS["hunyuan-ocr"] is HunyuanOCR
    assert not DeepSeekOCR.local and not HunyuanOCR.local


def test_no_url_and_no_gpu(monkeypatch):
    monkeypatch.setattr(vlm, "gpu_present", lambda: False)
    backend = DeepSeekOCR()
    availability = backend.availability()
    assert not availability.available and "no NVIDIA GPU" in availability.reason
    assert "STUDIO_DEEPSEEK_OCR_URL" in availability.hint and "STUDIO_DEEPSEEK_OCR_DEVICE=cpu" in availability.hint
    with pytest.raises(OCRUnavailableError, match="no NVIDIA GPU"):
        backend.recognize(page_image())


def test_local_path_refuses_deepseek_v1_remote_code_unless_trusted():
    availability = DeepSeekOCR(model="deepseek-ai/DeepSeek-OCR", device="cpu").availability()
    assert not availability.available and "remote code" in availability.reason
    assert "STUDIO_DEEPSEEK_OCR_TRUST_REMOTE_CODE=1" in availability.hint and "4.46.3" in availability.hint
    trusted_on_cpu = DeepSeekOCR(model="deepseek-ai/DeepSeek-OCR", device="cpu", trust_remote_code=True).availability()
    assert not trusted_on_cpu.available and ".cuda()" in trusted_on_cpu.reason


def test_local_server_runs_the_native_models_in_the_vlm_environment(monkeypatch):
    monkeypatch.setenv("STUDIO_HUNYUAN_OCR_REVISION", "0123abc")
    deepseek = DeepSeekOCR(device="cpu")
    command = vlm.local_server_command(deepseek.settings, deepseek.recipe, "/venv-vlm/bin/python")
    assert command[:3] == ["/venv-vlm/bin/python", "-m", "engine.ocr.vlm_server"]
    # DeepSeek-OCR 2 by default: the native-format weights, served under the id vLLM uses, no remote code
    assert command[command.index("--model") + 1] == "deepseek-community/DeepSeek-OCR-2"
    assert command[command.index("--served-model-name") + 1] == DEEPSEEK and "--trust-remote-code" not in command
    hunyuan = HunyuanOCR(device="cpu")
    command = vlm.local_server_command(hunyuan.settings, hunyuan.recipe, "python")
    assert command[command.index("--model") + 1] == HUNYUAN and command[command.index("--revision") + 1] == "0123abc"
    if vlm_env.problem() is None:  # the default models need no remote code and run on the CPU when asked
        for backend in (deepseek, hunyuan):
            availability = backend.availability()
            assert availability.available and "VLM environment" in availability.hint


def test_vlm_environment_location(monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_VLM_PYTHON", str(tmp_path / "nothing" / "python"))
    reason = vlm_env.problem()
    assert reason is not None and "STUDIO_VLM_PYTHON" in reason[0]
    with pytest.raises(OCRUnavailableError, match="not available"):
        vlm_env.ensure()
    availability = HunyuanOCR(device="cpu").availability()
    assert not availability.available and "STUDIO_VLM_PYTHON" in availability.reason


# --- the server's request handling (pure) -------------------------------------------------------------
def test_server_support_checks():
    known = {"idefics3", "llava", "qwen2_vl"}
    hunyuan = support_problem({"model_type": "hunyuan_vl"}, known, "4.57.6", False, "cuda")
    assert hunyuan is not None and "5.13" in hunyuan.message and "4.57.6" in hunyuan.message
    assert "setup.sh --vlm" in hunyuan.hint
    assert "5.10" in support_problem({"model_type": "deepseek_ocr2"}, known, "4.57.6", False, "cpu").message
    assert support_problem({"model_type": "deepseek_ocr2"}, known | {"deepseek_ocr2"}, "5.24.0", False, "cpu") is None
    remote_v2 = {"model_type": "deepseek_vl_v2", "architectures": ["DeepseekOCR2ForCausalLM"], "auto_map": {"AutoModel": "x"}}
    refused = support_problem(remote_v2, known, "5.24.0", False, "cpu")
    assert refused.code == "remote_code_refused" and "deepseek-community/DeepSeek-OCR-2" in refused.hint
    deepseek = {"model_type": "deepseek_vl_v2", "architectures": ["DeepseekOCRForCausalLM"], "auto_map": {"AutoModel": "x"}}
    assert support_problem(deepseek, known, "4.57.6", False, "cuda").code == "remote_code_refused"
    assert ".cuda()" in support_problem(deepseek, known, "4.57.6", True, "cpu").message
    assert support_problem(deepseek, known, "4.57.6", True, "cuda") is None
    assert "does not know" in support_problem({"model_type": "florence9"}, known, "4.57.6", False, "cpu").message
    assert support_problem({"model_type": "idefics3"}, known, "4.57.6", False, "cpu") is None


def test_server_request_parsing():
    png = page_image().png
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    messages, images = to_hf_messages([
        {"role": "system", "content": ""},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": "Free OCR."}]},
    ])
    assert images == [png]
    assert messages == [{"role": "system", "content": ""},
                        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Free OCR."}]}]
    assert plain_prompt(messages, 1, "<image>") == "<image>\nFree OCR."  # DeepSeek-OCR 2's model-card prompt
    with pytest.raises(RequestError, match="data:image"):
        to_hf_messages([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}])
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=9, temperature=0.0,
                          vllm_xargs={"ngram_size": 30, "window_size": 90, "whitelist_token_ids": [128821, 128822]})
    sampling = sampling_from(request)
    assert sampling.greedy and sampling.max_tokens == 9 and sampling.ngram_ban == (30, 90, frozenset({128821, 128822}))
    assert sampling_from(ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], top_k=1)).greedy
    with pytest.raises(RequestError, match="stream"):
        sampling_from(ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], stream=True))


def test_server_context_and_finish_rules():
    assert check_context(100, 50, 512) == 50 and check_context(100, None, 512) == 412
    with pytest.raises(RequestError, match="maximum context length is 512 tokens"):
        check_context(100, 500, 512)
    decode = lambda ids: ",".join(map(str, ids))  # noqa: E731
    stopped = finish([5, 6, 2], max_new=3, eos_ids={2}, prompt_tokens=10, decode=decode)
    assert (stopped.text, stopped.finish_reason, stopped.completion_tokens) == ("5,6", "stop", 3)
    capped = finish([5, 6, 7], max_new=3, eos_ids={2}, prompt_tokens=10, decode=decode)
    assert (capped.text, capped.finish_reason) == ("5,6,7", "length")


def test_windowed_ngram_ban_matches_deepseeks_rule():
    torch = pytest.importorskip("torch")
    from engine.ocr.vlm_server import windowed_ngram_ban

    prompt = [9, 9, 9]
    generated = [1, 2, 3, 1, 2, 4, 1, 2]  # after (1, 2) came 3 and 4: both banned for a 3-gram rule
    scores = torch.zeros(1, 10)
    out = windowed_ngram_ban(len(prompt), 3, 100, frozenset({4}))(torch.tensor([prompt + generated]), scores)
    assert torch.isinf(out[0, 3]) and not torch.isinf(out[0, 4])  # 4 is whitelisted (a table cell)
    assert int(torch.isinf(out[0]).sum()) == 1
    narrow = windowed_ngram_ban(len(prompt), 3, 5, frozenset())(torch.tensor([prompt + generated]), torch.zeros(1, 10))
    assert torch.isinf(narrow[0, 4]) and not torch.isinf(narrow[0, 3])  # (1, 2, 3) is outside the 5-token window


# --- the transformers path, end to end on a tiny random-weight model ------------------------------------
@pytest.fixture(scope="module")
def vlm_python() -> Path:
    """The VLM environment's interpreter, created from requirements-vlm.txt when missing (minutes, once)."""
    try:
        return vlm_env.ensure()
    except OCRUnavailableError as exc:
        pytest.skip(f"the VLM environment cannot be created here: {exc.message}")


@pytest.fixture(scope="module")
def tiny_models(vlm_python, tmp_path_factory) -> dict[str, Path]:
    from servers.tiny_vlm import build_with

    return build_with(vlm_python, ["idefics3", "deepseek-ocr2", "hunyuan-vl"], tmp_path_factory.mktemp("tiny-vlms"))


@pytest.fixture(scope="module")
def tiny_model(tiny_models) -> Path:
    return tiny_models["idefics3"]


@pytest.fixture(scope="module")
def tiny_server(tiny_model):
    """The back-end starts `python -m engine.ocr.vlm_server` itself (no URL configured, device cpu)."""
    backend = DeepSeekOCR(model=str(tiny_model), device="cpu", max_tokens=8, start_timeout_s=300)
    assert backend.availability().available
    first = backend.recognize(page_image())
    (server,) = vlm._local_servers.values()
    yield backend, first, server
    vlm.stop_local_servers()
    assert server.process.poll() is not None  # stopped with the session


def test_backend_starts_and_reuses_the_local_server(tiny_server, tiny_model):
    backend, first, server = tiny_server
    assert isinstance(first.text, str) and first.seconds > 0
    assert server.running() and server.command[1:3] == ["-m", "engine.ocr.vlm_server"] and "cpu" in server.command
    again = DeepSeekOCR(model=str(tiny_model), device="cpu", max_tokens=8).recognize(page_image(2))
    assert again.text == first.text  # greedy decoding of the same image: same answer
    assert len(vlm._local_servers) == 1  # a second back-end instance reuses the running server


def test_transformers_server_speaks_the_protocol(tiny_server, tiny_model):
    url, served = tiny_server[2].base_url, str(tiny_model)
    models = httpx.get(url + "/v1/models").json()
    assert models["data"][0]["id"] == served and models["data"][0]["max_model_len"] == 512
    data_uri = "data:image/png;base64," + base64.b64encode(page_image().png).decode()
    body = {"model": served, "max_tokens": 12, "temperature": 0.0,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": data_uri}},
                {"type": "text", "text": "Free OCR."}]}],
            "skip_special_tokens": False, "vllm_xargs": {"ngram_size": 3, "window_size": 90, "whitelist_token_ids": [1]}}
    answer = httpx.post(url + "/v1/chat/completions", json=body, timeout=120).json()
    choice = answer["choices"][0]
    assert answer["object"] == "chat.completion" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in {"stop", "length"} and 1 <= answer["usage"]["completion_tokens"] <= 12
    assert (choice["finish_reason"] == "length") == (answer["usage"]["completion_tokens"] == 12)
    assert answer["usage"]["prompt_tokens"] > 10  # the image tokens are in the prompt
    wrong = httpx.post(url + "/v1/chat/completions", json=body | {"model": "other"}, timeout=30)
    assert wrong.status_code == 404 and "does not exist" in wrong.json()["error"]["message"]
    too_long = httpx.post(url + "/v1/chat/completions", json=body | {"max_tokens": 5000}, timeout=30)
    assert too_long.status_code == 400 and "maximum context length is 512" in too_long.json()["error"]["message"]
    bad_image = json.loads(json.dumps(body))
    bad_image["messages"][0]["content"][0]["image_url"]["url"] = "data:image/png;base64,bm90IGFuIGltYWdl"
    assert httpx.post(url + "/v1/chat/completions", json=bad_image, timeout=30).status_code == 400


def test_both_recipes_run_end_to_end_through_the_transformers_server(tiny_server, tiny_model):
    url, served = tiny_server[2].base_url, str(tiny_model)
    for backend in (DeepSeekOCR(url=url, model=served, max_tokens=16), HunyuanOCR(url=url, model=served, max_tokens=16)):
        assert backend.availability().available
        result = backend.recognize(page_image())
        assert isinstance(result.text, str) and result.seconds > 0
        capped = any("max-token cap (16 tokens)" in note for note in result.notes)
        assert result.degraded == (capped or any("repetition" in note for note in result.notes))
    with pytest.raises(OCRServiceError, match="maximum context length") as caught:
        DeepSeekOCR(url=url, model=served).recognize(page_image())  # the 6144 default > the tiny model's 512
    assert "STUDIO_OCR_MAX_TOKENS" in caught.value.hint


def test_local_server_failure_reaches_the_user(vlm_python, tmp_path):
    model = tmp_path / "broken"  # a HunyuanOCR config without weights or processor files
    model.mkdir()
    config = {"model_type": "hunyuan_vl", "architectures": ["HunYuanVLForConditionalGeneration"]}
    (model / "config.json").write_text(json.dumps(config))
    try:
        with pytest.raises(OCRServiceError) as caught:
            HunyuanOCR(model=str(model), device="cpu", start_timeout_s=120).recognize(page_image())
    finally:
        for key in [key for key in vlm._local_servers if str(model) in key]:
            vlm._local_servers.pop(key).stop()
    assert "exited while starting" in caught.value.message and f"Cannot load {model}" in caught.value.message


# --- DeepSeek-OCR 2 and HunyuanOCR natively (transformers 5), through the back-ends and the ingest pipeline ---
NATIVE = {  # back-end, env prefix, tiny model kind, token cap
    "deepseek-ocr": (DeepSeekOCR, "STUDIO_DEEPSEEK_OCR_", "deepseek-ocr2", 128),
    "hunyuan-ocr": (HunyuanOCR, "STUDIO_HUNYUAN_OCR_", "hunyuan-vl", 64),
}


@pytest.fixture(scope="module")
def scanned_page(tmp_path_factory) -> Path:
    """Page 1 of a real typewritten scan (image only, no text layer) as a one-page PDF."""
    import pymupdf

    with pymupdf.open(shared_data("pdfs", "scan_grumman_bulletin_notext.pdf")) as source:
        source.select([0])
        path = tmp_path_factory.mktemp("scan") / "grumman_page1.pdf"
        source.save(path)
    return path


@pytest.mark.parametrize("engine", sorted(NATIVE))
def test_native_model_ocrs_a_scanned_page_through_the_ingest_pipeline(engine, tiny_models, scanned_page, studio, monkeypatch):
    from engine.documents import open_document
    from engine.pipeline import IngestOptions, collection, ingest

    backend_class, prefix, kind, cap = NATIVE[engine]
    model = str(tiny_models[kind])
    for key, value in {"MODEL": model, "DEVICE": "cpu", "MAX_TOKENS": str(cap), "START_TIMEOUT_S": "300"}.items():
        monkeypatch.setenv(prefix + key, value)
    try:
        result = ingest(studio, f"native-{engine}", scanned_page, options=IngestOptions(ocr=engine, force=True))
        (server,) = [s for key, s in vlm._local_servers.items() if model in key]
        assert server.command[0] == str(vlm_env.locate().python) and "--trust-remote-code" not in server.command
        # the same page image, asked of the same server directly: its answer is what the page holds
        with open_document(scanned_page) as document:
            image = document.render(1)
        body = vlm.build_chat_request(backend_class.recipe, model, image, cap)
        answer = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=300).json()
    finally:
        vlm.stop_local_servers()
    assert result.ok and result.pages == 1 and result.ocr_pages == 1
    record = collection(studio, f"native-{engine}").info().document("grumman_page1.pdf")
    (page,) = collection(studio, f"native-{engine}").pages_of(record.doc_id)
    raw, finish_reason = answer["choices"][0]["message"]["content"], answer["choices"][0]["finish_reason"]
    expected = vlm.clean_vlm_output(raw, finish_reason, cap)
    assert page.source == engine and page.ocr_used and page.number == 1
    assert page.text == expected.text and raw.startswith(page.text)
    # the tiny model repeats "!" by construction: the token cap fires and the page is degraded
    assert finish_reason == "length" and answer["usage"]["completion_tokens"] == cap
    assert page.degraded and any(f"max-token cap ({cap} tokens)" in note for note in page.notes)
    if engine == "deepseek-ocr":
        # DeepSeek's recipe bans repeated 30-grams in a 90-token window (vllm_xargs, applied by our server):
        # no run of 31 "!" survives, so the output is not periodic and the client's loop cut has nothing to cut
        assert "!" * 31 not in raw and "!" * 30 in raw and page.text == raw.strip()
    else:
        # HunyuanOCR's recipe has no n-gram ban: the client's repetition guard cuts the loop to one copy
        assert raw == "!" * cap and page.text == "!"
        assert any(f"repetition loop cut: a 1-character unit repeated {cap} times" in note for note in page.notes)
