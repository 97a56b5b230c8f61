"""ONNX Embedding Studio — home page: what ONNX Runtime sees here, which provider really runs,
the default model's state, and a sentence embedded on the spot."""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from engine import providers
from engine.errors import StudioError
from engine.studio import Studio

st.set_page_config(page_title="ONNX Embedding Studio", page_icon="🧭", layout="wide")


@st.cache_resource
def get_studio() -> Studio:
    from engine import log

    log.configure()
    return Studio()


studio = get_studio()
st.title("ONNX Embedding Studio")
st.caption("PDFs to searchable knowledge with embedding models you control, on any hardware.")

left, right = st.columns(2)
with left:
    st.subheader("Hardware")
    rows = providers.status()
    st.dataframe(
        [{"provider": r.name, "available": r.available, "auto picks": r.auto_candidate, "note": r.note} for r in rows],
        hide_index=True,
        width="stretch",
    )
with right:
    st.subheader("Default model")
    try:
        spec = studio.registry.get(studio.registry.default_model)
    except StudioError as exc:
        st.error(exc.message)
        st.stop()
    if spec.manifest is None:
        st.warning(f"{spec.name} is not converted yet. Run `python -m engine convert {spec.name}`.")
    else:
        manifest = spec.manifest
        st.markdown(
            f"**{spec.name}** — {manifest.dim} dimensions, {'+'.join(manifest.pooling_modes)} pooling, "
            f"max {manifest.max_seq_length} tokens, variants: {', '.join(manifest.variants)}"
        )
        parity = manifest.variants["fp32"].parity
        if parity:
            st.caption(f"fp32 parity with sentence-transformers: max |diff| {parity.max_abs_diff:.1e}, "
                       f"min cosine {parity.min_cosine:.6f}")

st.subheader("Try it")
text = st.text_input("A sentence to embed", "ONNX Runtime turns PDFs into searchable knowledge.")
if text and spec.manifest is not None:
    try:
        embedder = studio.embedder(spec.name)
        started = time.perf_counter()
        vector = embedder.embed([text])[0]
        elapsed = time.perf_counter() - started
        info = embedder.info()
    except StudioError as exc:
        st.error(exc.message + (f" — {exc.hint}" if exc.hint else ""))
    else:
        if info["fallback"]:
            st.warning(info["fallback"])
        st.success(f"{len(vector)} dimensions on **{info['provider']}** in {elapsed * 1000:.1f} ms, "
                   f"norm {np.linalg.norm(vector):.4f}")
        st.code(np.array2string(vector[:12], precision=4, separator=", ") + " …")
