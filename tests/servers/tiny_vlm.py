"""Tiny random-weight vision-language models with processors built offline (a byte-level tokenizer,
the model's own image processor, a chat template where the model has one), saved as model folders
the VLM server loads like a hub checkout:

- ``idefics3``: Idefics3 (the architecture of SmolDocling / granite-docling);
- ``deepseek-ocr2``: DeepSeek-OCR 2 (``deepseek_ocr2``, transformers' native class), with the real
  image geometry (1024 global view + 768 tiles: the model's query embeddings are sized for them), 2 tiles;
- ``hunyuan-vl``: HunyuanOCR (``hunyuan_vl``, native), HunyuanOCR's chat-template shape and special tokens.

Their output is gibberish; they exist to run the real transformers path (processor -> generate ->
decode) of engine.ocr.vlm_server on a CPU in seconds. DeepSeek-OCR 2 and HunYuanVL are built with the
text decoder's final norm zeroed, so every logit is 0 and greedy decoding repeats token 0 ("!")
until the token cap: a model that loops by construction, for the cap and the repetition guard.
Build them with the VLM environment's Python (transformers 5):

    .venv-vlm/bin/python tests/servers/tiny_vlm.py KIND[,KIND...] OUT_DIR    (each into OUT_DIR/KIND)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

IMAGE_SIZE, PATCH = 32, 8  # 16 patches per tile, 4 image tokens after the 2x2 pixel shuffle
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>"]
GRID = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def byte_level_tokenizer(special: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(special)
    return core


def build_tiny_idefics3(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        PreTrainedTokenizerFast,
    )

    core = byte_level_tokenizer(SPECIAL + GRID)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                                        pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>",
                                                                "<global-img>"]})
    image_processor = Idefics3ImageProcessor(size={"longest_edge": 2 * IMAGE_SIZE}, max_image_size={"longest_edge": IMAGE_SIZE})
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                  image_seq_len=(IMAGE_SIZE // PATCH) ** 2 // 4, chat_template=CHAT_TEMPLATE)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL}
    config = Idefics3Config(
        text_config={"model_type": "llama", "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512,
                     "bos_token_id": ids["<|im_start|>"], "eos_token_id": ids["<end_of_utterance>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": IMAGE_SIZE, "patch_size": PATCH},
        scale_factor=2, image_token_id=ids["<image>"], pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<end_of_utterance>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _save(model, processor, eos: int, pad: int, out: Path, loop: bool) -> Path:
    import torch

    if loop:
        with torch.no_grad():
            model.model.language_model.norm.weight.zero_()
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


DS_SPECIAL = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<image>", "<|grounding|>",
              "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>"]


def build_tiny_deepseek_ocr2(out: Path, seed: int = 0, loop: bool = True) -> Path:
    import torch
    from transformers import (
        DeepseekOcr2Config,
        DeepseekOcr2ForConditionalGeneration,
        DeepseekOcr2Processor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import DeepseekOcr2ImageProcessorPil

    bos, eos, pad = DS_SPECIAL[:3]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=byte_level_tokenizer(DS_SPECIAL), bos_token=bos, eos_token=eos,
                                        pad_token=pad)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in DS_SPECIAL}
    # the published geometry (1024 global view, tiles of 768: the query embeddings are sized for them), but
    # two tiles at most instead of six, to keep the CPU test short
    processor = DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessorPil(max_patches=2), tokenizer=tokenizer)
    config = DeepseekOcr2Config(
        vision_config={
            "sam_config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1, "output_channels": 16,
                           "downsample_channels": [16, 32], "global_attn_indexes": [], "mlp_dim": 32},
            "encoder_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                               "num_key_value_heads": 1, "vocab_size": 8},
        },
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 2048,
                     "n_routed_experts": 4, "num_experts_per_tok": 2, "n_shared_experts": 1, "moe_intermediate_size": 16,
                     "mlp_layer_types": ["dense"], "bos_token_id": ids[bos], "eos_token_id": ids[eos], "pad_token_id": ids[pad]},
        image_token_id=ids["<image>"],
    )
    torch.manual_seed(seed)
    model = DeepseekOcr2ForConditionalGeneration(config).eval()
    return _save(model, processor, ids[eos], ids[pad], out, loop)


HY_BOS, HY_EOS, HY_PAD = "<｜hy_begin▁of▁sentence｜>", "<｜hy_place▁holder▁no▁2｜>", "<｜hy_pad｜>"
HY_USER, HY_ASSISTANT, HY_SYSTEM_END = "<｜hy_User｜>", "<｜hy_Assistant｜>", "<｜hy_place▁holder▁no▁3｜>"
HY_IMAGE_START, HY_IMAGE_END, HY_IMAGE, HY_NEWLINE = (f"<｜hy_place▁holder▁no▁{n}｜>" for n in (100, 101, 102, 103))
HY_TEMPLATE = (  # the shape of HunyuanOCR's template: system text, image span wrapped in start/end tokens, user, assistant
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}" + HY_SYSTEM_END +
    "{% elif m['role'] == 'user' %}{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}" + HY_IMAGE_START + HY_IMAGE + HY_IMAGE_END +
    "{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}" + HY_USER +
    "{% else %}{{ m['content'] }}" + HY_EOS + "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}" + HY_ASSISTANT + "{% endif %}"
)


def build_tiny_hunyuan_vl(out: Path, seed: int = 0, loop: bool = True) -> Path:
    import torch
    from transformers import HunYuanVLConfig, HunYuanVLForConditionalGeneration, HunYuanVLProcessor, PreTrainedTokenizerFast
    from transformers.models.hunyuan_vl.image_processing_pil_hunyuan_vl import HunYuanVLImageProcessorPil

    special = [HY_BOS, HY_EOS, HY_PAD, HY_USER, HY_ASSISTANT, HY_SYSTEM_END, HY_IMAGE_START, HY_IMAGE_END, HY_IMAGE, HY_NEWLINE]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=byte_level_tokenizer(special), bos_token=HY_BOS, eos_token=HY_EOS, pad_token=HY_PAD,
        extra_special_tokens={"image_token": HY_IMAGE, "image_start_token": HY_IMAGE_START, "image_end_token": HY_IMAGE_END},
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in special}
    image_processor = HunYuanVLImageProcessorPil(min_pixels=32 * 32, max_pixels=64 * 64)  # 4-16 patches of 16 px
    processor = HunYuanVLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=HY_TEMPLATE)
    config = HunYuanVLConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "out_hidden_size": 32, "patch_size": 16, "spatial_merge_size": 2, "max_image_size": 128,
                       "min_image_size": 32},
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 512,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 2, 2, 2]},
                     "bos_token_id": ids[HY_BOS], "eos_token_id": ids[HY_EOS], "pad_token_id": ids[HY_PAD]},
        im_start_id=ids[HY_IMAGE_START], im_end_id=ids[HY_IMAGE_END], im_newline_id=ids[HY_NEWLINE], image_token_id=ids[HY_IMAGE],
    )
    torch.manual_seed(seed)
    model = HunYuanVLForConditionalGeneration(config).eval()
    return _save(model, processor, ids[HY_EOS], ids[HY_PAD], out, loop)


BUILDERS = {"idefics3": build_tiny_idefics3, "deepseek-ocr2": build_tiny_deepseek_ocr2, "hunyuan-vl": build_tiny_hunyuan_vl}


def build_with(python: str | Path, kinds: list[str], out: Path, timeout: float = 300) -> dict[str, Path]:
    """Build tiny models in another environment (the VLM server's), from this process, in one interpreter."""
    done = subprocess.run([str(python), __file__, ",".join(kinds), str(out)], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"building the tiny models {kinds} failed: {done.stderr.strip()[-2000:]}")
    return {kind: out / kind for kind in kinds}


if __name__ == "__main__":
    for name in sys.argv[1].split(","):
        print(BUILDERS[name](Path(sys.argv[2]) / name))
