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
import io
import logging
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

from engine.errors import OCRUnavailableError, RemoteCodeRefusedError, StudioError
from engine.httpauth import authorized
from engine.ocr.vlm_protocol import (
    ChatRequest,
    RequestError,
    Sampling,
    plain_prompt,
    prompt_text,
    sampling_from,
    to_hf_messages,
)

log = logging.getLogger(__name__)
DEEPSEEK_OCR_ARCHITECTURE = "DeepseekOCRForCausalLM"  # v1, remote code
DEEPSEEK_OCR2_REMOTE_ARCHITECTURE = "DeepseekOCR2ForCausalLM"  # deepseek-ai/DeepSeek-OCR-2 as published (remote code)
DEEPSEEK_OCR2_NATIVE = "deepseek-community/DeepSeek-OCR-2"
NATIVE_SINCE = {"hunyuan_vl": "5.13", "deepseek_ocr2": "5.10"}  # first transformers release with the model type


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
