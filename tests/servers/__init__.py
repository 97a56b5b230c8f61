"""Servers the tests start on 127.0.0.1: fakes of external services (Mistral's /v1/ocr, a vLLM-like
/v1/chat/completions) speaking the real HTTP protocol, and a tiny vision-language model to serve."""
