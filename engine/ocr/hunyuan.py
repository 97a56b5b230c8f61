"""HunyuanOCR (tencent/HunyuanOCR, ~1B) through an OpenAI-compatible server.

Recipe (notes: ocr-backends §3.3-§3.5, vllm-spark §3.2): an empty system message, the page image,
the document-parsing prompt; ``temperature=0``, ``top_k=1``, ``repetition_penalty=1.0``.
Locally, the transformers server loads it as the native ``hunyuan_vl`` architecture
(``HunYuanVLForConditionalGeneration``, transformers >= 5.13) in the VLM environment, no remote code.

Revision: the hub repository was overwritten by HunyuanOCR 1.5 (2026-07-07; same ``hunyuan_vl``
architecture and processor, so both load natively). ``REVISION`` is None (the hub's newest, i.e.
1.5 today) because no commit id of the pre-1.5 snapshot could be verified from this machine (no
hub access); set ``STUDIO_HUNYUAN_OCR_REVISION`` to the commit you have validated to pin it.

Licence: the Tencent Hunyuan Community License, which third-party readings say excludes the EU, the
UK and South Korea; the back-end only runs when a user picks it.
"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from engine.ocr import register
from engine.ocr.vlm import ChatRecipe, VLMBackend, VLMSettings

MODEL_ID = "tencent/HunyuanOCR"
REVISION: str | None = None  # see the module docstring: no verified pre-1.5 commit id

DOC_PARSE_PROMPT = (
    "Extract all information from the main body of the document image and represent it in markdown format, "
    "ignoring headers and footers. Tables should be expressed in HTML format, formulas in the document should be "
    "represented using LaTeX format, and the parsing should be organized according to the reading order."
)

RECIPE = ChatRecipe(
    engine="hunyuan-ocr",
    label="HunyuanOCR",
    prompt=DOC_PARSE_PROMPT,
    system_message="",
    decoding={"temperature": 0.0, "top_k": 1, "repetition_penalty": 1.0},
    # 1.5's guidance: 8192 rather than 32768, since degenerate runs hit the cap anyway
    default_max_tokens=8192,
    serve_hint=f"vllm serve {MODEL_ID} --no-enable-prefix-caching --mm-processor-cache-gb 0",
    local_weights={MODEL_ID: (MODEL_ID, REVISION)},
)


class HunyuanOCRSettings(VLMSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIO_HUNYUAN_OCR_", extra="ignore", frozen=True)

    model: str = MODEL_ID


@register
class HunyuanOCR(VLMBackend):
    name = "hunyuan-ocr"
    recipe = RECIPE
    settings_class = HunyuanOCRSettings
