"""DeepSeek-OCR (deepseek-ai/DeepSeek-OCR, MIT) through an OpenAI-compatible server.

Recipe (notes: ocr-backends §2.3, vllm-spark §3.1): the page image plus a plain prompt,
``temperature=0``, ``skip_special_tokens=False`` (grounding tags are kept by the model and stripped
by us), and the n-gram no-repeat arguments that vLLM's ``NGramPerReqLogitsProcessor`` reads from
``vllm_xargs`` (30-grams in a 90-token window; ``<td>``/``</td>`` are whitelisted so tables survive).
The default prompt asks for markdown (headings and tables help the chunker); ``Free OCR.`` is the
plain-text alternative (``STUDIO_DEEPSEEK_OCR_PROMPT``).
"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from engine.ocr import register
from engine.ocr.vlm import ChatRecipe, VLMBackend, VLMSettings

MODEL_ID = "deepseek-ai/DeepSeek-OCR"
TABLE_CELL_TOKEN_IDS = (128821, 128822)  # <td>, </td> in DeepSeek-OCR's vocabulary

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
    # The model's context is 8192 tokens and a page image takes up to ~900 of them (Gundam mode):
    # vLLM rejects max_tokens + prompt > max_model_len, so the cap leaves room for the image.
    default_max_tokens=6144,
    serve_hint=f"vllm serve {MODEL_ID} --logits_processors "
    "vllm.model_executor.models.deepseek_ocr:NGramPerReqLogitsProcessor --no-enable-prefix-caching --mm-processor-cache-gb 0",
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
        if problem is not None or "deepseek" not in self.settings.model.lower():
            return problem
        if not self.settings.trust_remote_code:
            return (
                "DeepSeek-OCR is remote code from its hub repository, which is not trusted by default",
                "or set STUDIO_DEEPSEEK_OCR_TRUST_REMOTE_CODE=1 to run that code with transformers "
                "(written for transformers 4.46.3 and CUDA; vLLM has the model built in)",
            )
        if not self.settings.device.startswith("cuda"):
            return "DeepSeek-OCR's own inference code calls .cuda(): it cannot run on the CPU", "or use a GPU machine"
        return None
