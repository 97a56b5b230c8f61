"""Search: a question in your own words against a collection; every hit with its score, document, page,
the matching span highlighted in the page text, and the page image."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import open_collection, page_setup, show_error
from engine import pipeline, providers, ui
from engine.errors import EncryptedDocumentError, StudioError
from engine.fusion import MODES
from engine.retrieval import SearchConfig

studio = page_setup()
st.title("Search")


@st.cache_data(max_entries=64, show_spinner=False)
def page_image(path: str, mtime: float, number: int, dpi: int, password: str | None, highlight: str | None,
               name: str) -> bytes:
    return ui.page_png(Path(path), number, dpi, password, highlight, name)


target, info = open_collection(studio, "search_collection")
collection_name = info.name

with st.form("search"):
    query = st.text_input("Your question", key="search_query", placeholder="What are you looking for?")
    k_column, mode_column, provider_column, docs_column = st.columns([1, 1, 1, 2])
    k = k_column.slider("Hits (k)", min_value=1, max_value=20, value=5)
    mode = mode_column.selectbox("Mode", MODES, index=MODES.index(SearchConfig.from_dict(info.search).mode),
                                 key="search_mode",
                                 help="dense: embeddings (meaning); keyword: BM25 (exact words, part numbers, "
                                      "names); hybrid: both, fused by reciprocal rank")
    provider = provider_column.selectbox("Provider", ui.provider_choices(providers.status()),
                                         help="auto picks the best one ONNX Runtime has here")
    names = {d.doc_id: d.name for d in info.documents}
    only = docs_column.multiselect("Only in these documents (optional)", list(names), format_func=names.get)
    submitted = st.form_submit_button("Search", type="primary")
if submitted:
    try:
        with st.spinner("Searching…"):
            result = pipeline.search(studio, collection_name, query, k=k, documents=only or None, provider=provider,
                                     mode=mode)
        st.session_state["search_result"] = (collection_name, query, result)
    except StudioError as exc:
        st.session_state.pop("search_result", None)
        show_error(exc)

saved = st.session_state.get("search_result")
if not saved or saved[0] != collection_name:
    st.caption(f"{len(info.documents)} documents, {info.chunk_count} chunks, embedded with {info.model}.")
    st.stop()
_, asked, result = saved
latency, model, ran_on = st.columns(3)
latency.metric("Query latency", ui.format_ms(result.seconds["total"]), help=ui.latency_text(result.seconds))
model.metric("Model", result.model)
ran_on.metric("Ran on", result.provider)
st.caption(f"“{ui.preview(asked, 300)}” — {result.mode} search — {ui.latency_text(result.seconds)}")
hits, gone = ui.live_hits(result.hits, (d.doc_id for d in info.documents))
if gone:
    st.warning(f"{ui.plural(gone, 'hit')} of this search came from documents deleted since: search again for hits "
               "from what the collection holds now.", icon=":material/history:")
if not hits:
    st.info("No hits: the collection is empty or the documents filter excludes everything.")
    st.stop()

page_texts: dict[tuple[str, int], str] = {}
for rank, hit in enumerate(hits, 1):
    with st.container(border=True):
        st.markdown(f"#### {rank}. {hit.document} — page {hit.page}")
        found = " + ".join(f"{name} ({score:.3f})" for name, score in hit.retrievers.items())
        st.caption(f"score {hit.score:.4f} · found by {found} · characters {hit.start}–{hit.end}"
                   + (f" · {' > '.join(hit.heading_path)}" if hit.heading_path else ""))
        text_column, image_column = st.columns([3, 2])
        with text_column:
            try:
                if (hit.doc_id, hit.page) not in page_texts:
                    for page in target.pages_of(hit.doc_id):
                        page_texts[(hit.doc_id, page.number)] = page.text
                page_text = page_texts.get((hit.doc_id, hit.page), hit.text)
            except StudioError:
                page_text = hit.text  # the page texts are gone: show the chunk itself
            st.html(ui.highlight_hit(page_text, hit.start, hit.end, context=160))
            with st.expander("Whole page"):
                st.html(ui.highlight_hit(page_text, hit.start, hit.end, context=None, height="40rem"))
        with image_column:
            try:
                original = target.original_of(hit.doc_id)
                if original is None:
                    st.caption("No stored copy of this file, so no page image.")
                else:
                    secret = st.session_state.get("doc_passwords", {}).get(hit.doc_id)
                    st.image(page_image(str(original), original.stat().st_mtime, hit.page, 100, secret, hit.text,
                                        hit.document),
                             caption=f"{hit.document}, page {hit.page}", width="stretch")
            except EncryptedDocumentError as exc:
                st.caption(f"Page image not available: {exc.message} Its password, given on the Documents page, "
                           "shows it here too.")
            except StudioError as exc:
                st.caption(f"Page image not available: {exc.message}")
