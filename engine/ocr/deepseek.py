"""DeepSeek-OCR 2 (deepseek-ai/DeepSeek-OCR-2, MIT) through an OpenAI-compatible server.

By default the model is DeepSeek-OCR 2. Served by vLLM it is ``deepseek-ai/DeepSeek-OCR-2``; the
local transformers server loads ``deepseek-community/DeepSeek-OCR-2``, the same model in transformers'
native ``deepseek_ocr2`` format (transformers >= 5.10, no remote code), under that same served name.
Its processor follows the model card: a 1024x1024 global view plus 2-6 tiles of 768x768
(256 + n x 144 image tokens), and the bare prompt ``"<image>\\n" + prompt`` (no chat template).

Recipe (the vLLM recipe for DeepSeek-OCR 2, notes: ocr-backends §2.3-§2.4): the page image plus
``<|grounding|>Convert the document to markdown.``, ``temperature=0``, ``skip_special_tokens=False``
(the grounding tags are stripped by us), and the n-gram no-repeat arguments vLLM's
``NGramPerReqLogitsProcessor`` (and our server) read from ``vllm_xargs``: 30-grams in a 90-token
window, ``<td>``/``</td>`` whitelisted so tables survive. ``Free OCR.`` is the plain-text
alternative (``STUDIO_DEEPSEEK_OCR_PROMPT``).

DeepSeek-OCR v1 (``STUDIO_DEEPSEEK_OCR_MODEL=deepseek-ai/DeepSeek-OCR``) is built into vLLM; through
transformers it is hub remote code for transformers 4.46.3 and CUDA: set
``STUDIO_DEEPSEEK_OCR_TRUST_REMOTE_CODE=1`` and ``STUDIO_VLM_PYTHON`` to an environment pinned to it.
"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from engine.ocr import register
from engine.ocr.vlm import ChatRecipe, VLMBackend, VLMSettings

MODEL_ID = "deepseek-ai/DeepSeek-OCR-2"
NATIVE_WEIGHTS = "deepseek-community/DeepSeek-OCR-2"  # the same weights, transformers' native deepseek_ocr2 format
V1_MODEL_ID = "deepseek-ai/DeepSeek-OCR"
TABLE_CELL_TOKEN_IDS = (128821, 128822)  # <td>, </td> in DeepSeek-OCR's (v1 and v2) vocabulary

RECIPE = ChatRecipe(
    engine="deepseek-ocr",
    label="DeepSeek-OCR",
    prompt="<|grounding|>Convert the document to markdown.",
    system_message=None,
    decoding={
        "temperature": 0.0,
        "skip_special_tokens": False,
        "vllm_xargs": {"ngram_size": 30, "window_size": 90, "whitelist_token_ids": list(TABLE_CELL_TOKEN_IDS)},
    },
    # The recipe's max_tokens is 8192, the model's whole context; a page image takes up to 1121 of
    # those tokens (256 + 6 x 144 + 1) and vLLM rejects prompt + max_tokens > max_model_len, so the
    # cap leaves room for the image.
    default_max_tokens=6144,
    serve_hint=f"vllm serve {MODEL_ID} --logits_processors "
    "vllm.model_executor.models.deepseek_ocr:NGramPerReqLogitsProcessor --no-enable-prefix-caching --mm-processor-cache-gb 0",
    local_weights={MODEL_ID: (NATIVE_WEIGHTS, None)},
)


class DeepSeekOCRSettings(VLMSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIO_DEEPSEEK_OCR_", extra="ignore", frozen=True)

    model: str = MODEL_ID


@register
class DeepSeekOCR(VLMBackend):
    name = "deepseek-ocr"
    recipe = RECIPE
    settings_class = DeepSeekOCRSettings

    def local_problem(self) -> tuple[str, str] | None:
        problem = super().local_problem()
        if problem is not None or (self.settings.weights or self.settings.model) != V1_MODEL_ID:
            return problem
        if not self.settings.trust_remote_code:
            return (
                "DeepSeek-OCR v1 is remote code from its hub repository, which is not trusted by default",
                "or use DeepSeek-OCR 2 (the default, native in transformers 5), or set STUDIO_DEEPSEEK_OCR_TRUST_REMOTE_CODE=1 "
                "and STUDIO_VLM_PYTHON to an environment with transformers==4.46.3 (the code's own pin) and CUDA",
            )
        if not self.settings.device.startswith("cuda"):
            return "DeepSeek-OCR v1's own inference code calls .cuda(): it cannot run on the CPU", "or use a GPU machine"
        return None
