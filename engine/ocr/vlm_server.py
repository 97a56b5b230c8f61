r"""Our own OpenAI-compatible server for a vision-language OCR model, run with transformers.

    python -m engine.ocr.vlm_server --model ID_OR_PATH --host 127.0.0.1 --port 8010 \
        [--device cuda|cpu] [--dtype auto|bfloat16|float16|float32] [--trust-remote-code] [--api-key KEY]

It serves ``GET /v1/models``, ``GET /health`` and ``POST /v1/chat/completions`` with the request
shape vLLM takes (image parts as base64 data URIs, ``max_tokens``, ``temperature``, ``top_k``,
``top_p``, ``repetition_penalty``, ``skip_special_tokens``, ``vllm_xargs`` with DeepSeek-OCR's
windowed n-gram ban), so the same client covers "local transformers" and "vLLM". One request
runs at a time; for throughput use vLLM.

Models: any image-text-to-text model native in the installed transformers. It runs in its own
environment (``.venv-vlm`` from requirements-vlm.txt: transformers 5.24, torch 2.13), where
DeepSeek-OCR 2 (``deepseek_ocr2``: deepseek-community/DeepSeek-OCR-2, the native-format copy of
deepseek-ai/DeepSeek-OCR-2) and HunyuanOCR (``hunyuan_vl``) are built in: no remote code. Processors
without a chat template (DeepSeek-OCR 2's model card feeds ``"<image>\n" + prompt`` straight to the
processor) get that plain prompt. DeepSeek-OCR v1 is hub remote code (``--trust-remote-code``)
written for transformers 4.46.3 and CUDA; in an environment pinned to that version it runs
through its own ``infer()`` with our token cap injected.

torch and transformers are imported only inside this process's functions, never when the module
is imported, so the engine (which imports every module) stays light.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import logging
import re
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import OCRUnavailableError, RemoteCodeRefusedError, StudioError
from engine.httpauth import authorized

log = logging.getLogger(__name__)
DEEPSEEK_OCR_ARCHITECTURE = "DeepseekOCRForCausalLM"  # v1, remote code
DEEPSEEK_OCR2_REMOTE_ARCHITECTURE = "DeepseekOCR2ForCausalLM"  # deepseek-ai/DeepSeek-OCR-2 as published (remote code)
DEEPSEEK_OCR2_NATIVE = "deepseek-community/DeepSeek-OCR-2"
NATIVE_SINCE = {"hunyuan_vl": "5.13", "deepseek_ocr2": "5.10"}  # first transformers release with the model type


# --- the request (what vLLM accepts, the part we honour) ------------------------------------------
class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = None  # vLLM: -1 or 0 mean "off"
    repetition_penalty: float | None = Field(None, gt=0)
    skip_special_tokens: bool = True
    vllm_xargs: dict[str, Any] | None = None
    stream: bool = False
    n: int = 1


class RequestError(Exception):
    """A request we refuse, with the HTTP status and an OpenAI-style error type."""

    def __init__(self, message: str, status: int = 400, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.message, self.status, self.kind = message, status, kind


@dataclass(frozen=True)
class Sampling:
    max_tokens: int | None
    greedy: bool
    temperature: float
    top_p: float | None
    top_k: int | None
    repetition_penalty: float | None
    skip_special_tokens: bool
    ngram_ban: tuple[int, int, frozenset[int]] | None  # (ngram_size, window_size, whitelist)


def sampling_from(request: ChatRequest) -> Sampling:
    if request.stream:
        raise RequestError("stream=true is not supported by this server")
    if request.n != 1:
        raise RequestError("only n=1 is supported")
    temperature = 1.0 if request.temperature is None else request.temperature  # OpenAI's default
    top_k = request.top_k if request.top_k and request.top_k > 0 else None
    xargs = request.vllm_xargs or {}
    ngram_ban = None
    if "ngram_size" in xargs:
        try:
            ngram_size, window = int(xargs["ngram_size"]), int(xargs.get("window_size", 100))
            whitelist = frozenset(int(t) for t in xargs.get("whitelist_token_ids", []))
        except (TypeError, ValueError):
            raise RequestError("vllm_xargs: ngram_size, window_size and whitelist_token_ids must be integers") from None
        if ngram_size < 1 or window < 1:
            raise RequestError("vllm_xargs: ngram_size and window_size must be positive")
        ngram_ban = (ngram_size, window, whitelist)
    return Sampling(
        max_tokens=request.max_completion_tokens or request.max_tokens,
        greedy=temperature == 0 or top_k == 1,
        temperature=temperature,
        top_p=request.top_p,
        top_k=top_k,
        repetition_penalty=request.repetition_penalty,
        skip_special_tokens=request.skip_special_tokens,
        ngram_ban=ngram_ban,
    )


_DATA_URI = re.compile(r"^data:image/[\w.+-]+;base64,(.*)$", re.S)


def decode_data_uri(url: str) -> bytes:
    match = _DATA_URI.match(url)
    if not match:
        raise RequestError("image_url must be a data:image/...;base64 URI (this server fetches nothing)")
    try:
        return base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("image_url: the base64 payload does not decode") from None


def to_hf_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[bytes]]:
    """OpenAI chat messages -> the messages a processor chat template takes, and the images in order."""
    converted, images = [], []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role not in {"system", "user", "assistant"}:
            raise RequestError(f"unsupported message role: {role!r}")
        if content is None or isinstance(content, str):
            converted.append({"role": role, "content": content or ""})
            continue
        if not isinstance(content, list):
            raise RequestError("message content must be a string or a list of parts")
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind == "image_url":
                image_url = part.get("image_url")
                url = image_url.get("url") if isinstance(image_url, dict) else image_url
                images.append(decode_data_uri(str(url or "")))
                parts.append({"type": "image"})
            else:
                raise RequestError(f"unsupported content part type: {kind!r}")
        converted.append({"role": role, "content": parts})
    return converted, images


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """The user's text parts joined (for models that take a bare prompt, such as DeepSeek-OCR's infer())."""
    texts = []
    for message in messages:
        if message["role"] != "user":
            continue
        content = message["content"]
        texts += [content] if isinstance(content, str) else [p["text"] for p in content if p["type"] == "text"]
    return "\n".join(t for t in texts if t)


def plain_prompt(messages: list[dict[str, Any]], image_count: int, image_token: str) -> str:
    """For processors without a chat template (DeepSeek-OCR 2): one image token per image, then the prompt,
    as the model card writes it: ``"<image>\\n<|grounding|>Convert the document to markdown."``."""
    text = prompt_text(messages)
    if image_token in text:
        return text
    return "".join(f"{image_token}\n" for _ in range(image_count)) + text


def is_deepseek_ocr(config: dict[str, Any]) -> bool:
    return DEEPSEEK_OCR_ARCHITECTURE in (config.get("architectures") or [])


def support_problem(
    config: dict[str, Any], known_model_types: set[str], transformers_version: str, trust_remote_code: bool, device: str
) -> StudioError | None:
    """Why this model cannot be served here (checked from config.json before any weights load), or None."""
    model_type = str(config.get("model_type", ""))
    remote_code = bool(config.get("auto_map"))
    if model_type in NATIVE_SINCE and model_type not in known_model_types:
        return OCRUnavailableError(
            f"The model type {model_type} is native in transformers >= {NATIVE_SINCE[model_type]}; "
            f"this environment has {transformers_version}",
            "run the server in the VLM environment (scripts/setup.sh --vlm creates .venv-vlm from requirements-vlm.txt), "
            "or serve the model with vLLM",
        )
    if DEEPSEEK_OCR2_REMOTE_ARCHITECTURE in (config.get("architectures") or []) and not trust_remote_code:
        return RemoteCodeRefusedError(
            "This copy of DeepSeek-OCR 2 is the hub remote-code release (written for transformers 4.46)",
            f"load {DEEPSEEK_OCR2_NATIVE} instead: the same model in transformers' native format, no remote code",
        )
    if remote_code and not trust_remote_code:
        return RemoteCodeRefusedError(
            f"This model ({model_type or 'unknown type'}) needs Python code from its hub repository",
            "pass --trust-remote-code if you trust that repository, or serve the model with vLLM",
        )
    if is_deepseek_ocr(config) and not device.startswith("cuda"):
        return OCRUnavailableError("DeepSeek-OCR's own inference code calls .cuda(): it needs an NVIDIA GPU",
                                   "run with --device cuda on a GPU machine, or serve it with vLLM")
    if not remote_code and model_type not in known_model_types:
        return OCRUnavailableError(f"transformers {transformers_version} does not know the model type {model_type!r}",
                                   "upgrade transformers, or serve the model with vLLM")
    return None


# --- generation (torch lives below this line, imported inside functions) ---------------------------
@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


class Runner:
    """A loaded model that answers one chat request at a time."""

    max_model_len: int = 0

    def generate(self, messages: list[dict[str, Any]], images: list[Any], sampling: Sampling) -> Generation:
        raise NotImplementedError


def windowed_ngram_ban(prompt_length: int, ngram_size: int, window: int, whitelist: frozenset[int]) -> Callable:
    """DeepSeek-OCR's n-gram no-repeat rule over the generated tokens: ban a token that would repeat
    an n-gram seen in the last ``window`` tokens, except whitelisted ones (table cells)."""
    import torch
    from transformers import LogitsProcessor

    class WindowedNgramBan(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            for row in range(input_ids.shape[0]):
                generated = input_ids[row, prompt_length:].tolist()
                if len(generated) < ngram_size:
                    continue
                prefix = tuple(generated[len(generated) - ngram_size + 1 :])
                start, end = max(0, len(generated) - window), len(generated) - ngram_size + 1
                banned = {generated[i + ngram_size - 1] for i in range(start, end)
                          if tuple(generated[i : i + ngram_size - 1]) == prefix} - whitelist
                if banned:
                    scores[row, sorted(banned)] = -float("inf")
            return scores

    return WindowedNgramBan()


def _torch_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def _eos_ids(generation_config) -> set[int]:
    eos = generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


class ProcessorRunner(Runner):
    """Models native in transformers: AutoProcessor (chat template + image processor) and generate()."""

    def __init__(self, model_id: str, device: str, dtype: str, trust_remote_code: bool, revision: str | None = None) -> None:
        import inspect

        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=trust_remote_code, revision=revision)
        self.model = AutoModelForImageTextToText.from_pretrained(
            model_id, dtype=_torch_dtype(dtype, device), trust_remote_code=trust_remote_code, revision=revision
        ).to(device).eval()
        self.chat_template = getattr(self.processor, "chat_template", None)
        self.device = device
        text_config = getattr(self.model.config, "text_config", self.model.config)
        self.max_model_len = int(getattr(text_config, "max_position_embeddings", 0) or 0)
        self.forward_args = set(inspect.signature(self.model.forward).parameters)
        self.eos_ids = _eos_ids(self.model.generation_config)

    def generate(self, messages, images, sampling: Sampling) -> Generation:
        import torch
        from transformers import LogitsProcessorList

        if self.chat_template:
            text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = plain_prompt(messages, len(images), getattr(self.processor, "image_token", "<image>"))
        inputs = self.processor(text=[text], images=[images] if images else None, return_tensors="pt")
        if "token_type_ids" not in self.forward_args:
            inputs.pop("token_type_ids", None)
        dtype = self.model.dtype
        inputs = {k: v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device) for k, v in inputs.items()}
        prompt_length = int(inputs["input_ids"].shape[1])
        max_new = check_context(prompt_length, sampling.max_tokens, self.max_model_len)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": not sampling.greedy}
        if not sampling.greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        if sampling.repetition_penalty and sampling.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = sampling.repetition_penalty
        if sampling.ngram_ban:
            kwargs["logits_processor"] = LogitsProcessorList([windowed_ngram_ban(prompt_length, *sampling.ngram_ban)])
        with torch.inference_mode():
            output = self.model.generate(**inputs, **{k: v for k, v in kwargs.items() if v is not None})
        generated = output[0, prompt_length:].tolist()
        return finish(generated, max_new, self.eos_ids, prompt_length,
                      lambda ids: self.processor.batch_decode([ids], skip_special_tokens=sampling.skip_special_tokens)[0])


class DeepSeekOCRRunner(Runner):
    """DeepSeek-OCR's remote code: its infer() builds the image tokens (Gundam mode: 1024 global view +
    640 tiles); we wrap the model's generate() to impose our token cap and n-gram rule."""

    def __init__(self, model_id: str, device: str, dtype: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=True)
        self.model = AutoModel.from_pretrained(model_id, trust_remote_code=True, use_safetensors=True,
                                               _attn_implementation="eager").eval().to(device).to(_torch_dtype(dtype, device))
        self.max_model_len = 8192
        self.workdir = Path(tempfile.mkdtemp(prefix="deepseek-ocr-"))

    def generate(self, messages, images, sampling: Sampling) -> Generation:
        if len(images) != 1:
            raise RequestError("DeepSeek-OCR takes exactly one image per request")
        prompt = prompt_text(messages)
        prompt = prompt if "<image>" in prompt else "<image>\n" + prompt
        image_path = self.workdir / f"{uuid.uuid4().hex}.png"
        images[0].save(image_path)
        max_new = sampling.max_tokens or 8192
        seen: dict[str, int] = {}
        original = self.model.generate

        def capped_generate(input_ids, *args, **kwargs):
            seen["prompt"] = int(input_ids.shape[-1])
            kwargs["max_new_tokens"] = max_new
            kwargs.pop("streamer", None)
            if sampling.ngram_ban:
                from transformers import LogitsProcessorList

                kwargs.pop("no_repeat_ngram_size", None)
                kwargs["logits_processor"] = LogitsProcessorList([windowed_ngram_ban(seen["prompt"], *sampling.ngram_ban)])
            output = original(input_ids, *args, **kwargs)
            seen["completion"] = int(output.shape[-1]) - seen["prompt"]
            return output

        self.model.generate = capped_generate
        try:
            text = self.model.infer(self.tokenizer, prompt=prompt, image_file=str(image_path), output_path=str(self.workdir),
                                    base_size=1024, image_size=640, crop_mode=True, save_results=False, eval_mode=True)
        finally:
            self.model.generate = original
            image_path.unlink(missing_ok=True)
        completion = seen.get("completion", 0)
        return Generation(text or "", seen.get("prompt", 0), completion, "length" if completion >= max_new else "stop")


def check_context(prompt_tokens: int, max_tokens: int | None, max_model_len: int) -> int:
    """vLLM's rule: prompt + max_tokens must fit the context; no max_tokens means 'the rest of it'."""
    if not max_model_len:
        return max_tokens or 4096
    if max_tokens is None:
        return max(1, max_model_len - prompt_tokens)
    if prompt_tokens + max_tokens > max_model_len:
        raise RequestError(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the completion)."
        )
    return max_tokens


def finish(generated: list[int], max_new: int, eos_ids: set[int], prompt_tokens: int, decode: Callable) -> Generation:
    """Drop the stop token (vLLM does not return it) and say why generation ended."""
    stopped = bool(generated) and generated[-1] in eos_ids
    while generated and generated[-1] in eos_ids:
        generated = generated[:-1]
    reason = "stop" if stopped or len(generated) < max_new else "length"
    return Generation(decode(generated), prompt_tokens, len(generated) + (1 if stopped else 0), reason)


def load_runner(model_id: str, device: str, dtype: str, trust_remote_code: bool, revision: str | None = None) -> Runner:
    import transformers
    from transformers import PretrainedConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    try:
        config, _ = PretrainedConfig.get_config_dict(model_id, revision=revision)
    except OSError as exc:
        reason = str(exc).split(". ")[0][:200]
        raise OCRUnavailableError(f"Cannot read the config.json of {model_id!r}: {reason}",
                                  "check --model (a local folder or a hub id; HF_HUB_OFFLINE blocks downloads)") from None
    problem = support_problem(config, set(CONFIG_MAPPING_NAMES), transformers.__version__, trust_remote_code, device)
    if problem is not None:
        raise problem
    if is_deepseek_ocr(config):
        try:
            return DeepSeekOCRRunner(model_id, device, dtype)
        except Exception as exc:  # remote code written for another transformers version fails in many ways
            raise OCRUnavailableError(
                f"DeepSeek-OCR's remote code failed to load with transformers {transformers.__version__}: {exc}"[:400],
                "its code targets transformers==4.46.3 + torch 2.6: use that environment, or serve the model with vLLM",
            ) from None
    try:
        return ProcessorRunner(model_id, device, dtype, trust_remote_code, revision)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as exc:  # missing files, a processor that cannot be built
        raise OCRUnavailableError(f"Cannot load {model_id} with transformers {transformers.__version__}: "
                                  f"{type(exc).__name__}: {exc}"[:400],
                                  "check that the folder (or hub repository) holds the weights and processor files") from None


# --- HTTP --------------------------------------------------------------------------------------------
def create_app(runner: Runner, served_name: str, model_id: str, api_key: str | None = None):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from PIL import Image, UnidentifiedImageError
    from pydantic import ValidationError

    app = FastAPI(title="studio VLM server")
    lock = threading.Lock()

    def error(message: str, status: int, kind: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": status}}, status_code=status)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if request.url.path.startswith("/v1/") and not authorized(request.headers.get("authorization"), api_key):
            return error("Unauthorized", 401, "AuthenticationError")
        return await call_next(request)

    @app.get("/health")
    def health() -> dict:
        return {}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": served_name, "object": "model", "created": int(time.time()),
                                            "owned_by": "studio", "root": model_id, "max_model_len": runner.max_model_len}]}

    @app.post("/v1/chat/completions")
    def chat(body: dict[str, Any]):
        try:
            request = ChatRequest.model_validate(body)
            if request.model != served_name:
                return error(f"The model `{request.model}` does not exist.", 404, "NotFoundError")
            sampling = sampling_from(request)
            messages, raw_images = to_hf_messages(request.messages)
            try:
                images = [Image.open(io.BytesIO(raw)).convert("RGB") for raw in raw_images]
            except (UnidentifiedImageError, OSError):
                raise RequestError("image_url: not a readable image") from None
            started = time.perf_counter()
            with lock:
                result = runner.generate(messages, images, sampling)
        except ValidationError as exc:
            return error(f"invalid request: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", 400, "BadRequestError")
        except RequestError as exc:
            return error(exc.message, exc.status, exc.kind)
        except Exception as exc:  # a failure inside the model (out of memory, a processor error): say so, keep serving
            log.exception("generation failed")
            return error(f"generation failed: {type(exc).__name__}: {exc}"[:500], 500, "InternalServerError")
        log.info("chat: %d prompt + %d completion tokens in %.2f s (%s)", result.prompt_tokens, result.completion_tokens,
                 time.perf_counter() - started, result.finish_reason)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": served_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text}, "logprobs": None,
                         "finish_reason": result.finish_reason}],
            "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                      "total_tokens": result.prompt_tokens + result.completion_tokens},
        }

    return app


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engine.ocr.vlm_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="hub id or local folder")
    parser.add_argument("--revision", help="the hub commit (or tag) to load; default: the newest")
    parser.add_argument("--served-model-name", help="the id clients send (default: --model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010, help="0 picks a free port (see --port-file)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once the model is loaded")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    parser.add_argument("--trust-remote-code", action="store_true", help="run Python code from the model's repository")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1/*")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from engine import log as studio_log

    args = parse_args(argv)
    studio_log.configure("DEBUG" if args.verbose else "INFO", json_lines=False)
    try:
        if args.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise OCRUnavailableError("--device cuda, but torch sees no CUDA GPU", "use --device cpu (slow) or a GPU machine")
        started = time.perf_counter()
        runner = load_runner(args.model, args.device, args.dtype, args.trust_remote_code, args.revision)
        log.info("loaded %s on %s in %.1f s", args.model, args.device, time.perf_counter() - started)
    except StudioError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 2
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    app = create_app(runner, args.served_model_name or args.model, args.model, args.api_key)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    log.info("serving %s on http://%s:%d", args.served_model_name or args.model, args.host, port)
    if args.port_file:
        args.port_file.write_text(str(port))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
