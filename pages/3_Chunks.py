"""Chunks: how a document was cut — boundaries and overlap on the page text, token counts — and a
preview of re-chunking with another size/overlap before applying it."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import guarded, open_collection, page_setup, show_error
from engine import pipeline, ui
from engine.errors import StudioError

studio = page_setup()
st.title("Chunks")
for message in st.session_state.pop("chunks_flash", []):
    st.success(message, icon=":material/check_circle:")


def token_chart(series: dict[str, list[int]], limit: int | None) -> go.Figure:
    figure = go.Figure()
    for name, tokens in series.items():
        bins = ui.histogram(tokens, bins=20)
        figure.add_bar(x=[(b["start"] + b["end"]) / 2 for b in bins], y=[b["count"] for b in bins],
                       width=[b["end"] - b["start"] for b in bins], name=name, opacity=0.75,
                       hovertext=[f"{b['start']:.0f}–{b['end']:.0f} tokens: {b['count']} chunks" for b in bins],
                       hoverinfo="text")
    if limit:
        figure.add_vline(x=limit, line_dash="dash", line_color="#dc2626", annotation_text=f"model limit {limit}")
    figure.update_layout(barmode="overlay", height=280, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="tokens per chunk",
                         yaxis_title="chunks", legend=dict(orientation="h", y=1.15))
    return figure


def legend() -> None:
    st.html(f'<div style="font-size:0.85rem">'
            f'<span style="background:{ui.CHUNK_COLOURS[0]};padding:1px 6px;color:#111">chunk</span> '
            f'<span style="background:{ui.CHUNK_COLOURS[1]};padding:1px 6px;color:#111">next chunk</span> '
            f'<span style="background:{ui.OVERLAP_COLOUR};padding:1px 6px;color:#111">overlap (in both)</span> '
            f'<span style="color:#888">not in any chunk</span> · <b style="color:#1d4ed8">#n</b> marks where chunk n starts'
            f'</div>')


target, info = open_collection(studio, "chunks_collection")
collection_name = info.name
try:
    if not info.documents:
        st.info("This collection has no documents.")
        st.stop()
    names = {d.doc_id: d.name for d in info.documents}
    doc_id = st.selectbox("Document", list(names), format_func=names.get, key="chunks_doc")
    record = info.document(doc_id)
    pages = target.pages_of(doc_id)
    _, chunks = target.chunks_of(doc_id)
    embedder = studio.embedder(info.model, info.variant)
except StudioError as exc:
    show_error(exc)
    st.stop()

limit = embedder.tokenizer.max_seq_length - embedder.tokenizer.special_tokens_count
stats = ui.chunk_stats(chunks)
columns = st.columns(5)
columns[0].metric("Chunks", stats.count)
columns[1].metric("Pages with text", f"{stats.pages} / {record.pages}")
columns[2].metric("Tokens per chunk", f"{stats.mean_tokens:.0f}", help=f"min {stats.min_tokens}, max {stats.max_tokens}")
columns[3].metric("Overlapping chunks", stats.overlapping, help="chunks that repeat the end of the previous one")
columns[4].metric("Mean overlap", f"{stats.mean_overlap_chars:.0f} chars")
stored = info.chunking
st.caption(f"Collection settings: size {stored.get('size', '?')} tokens, overlap {stored.get('overlap', '?')} tokens, "
           f"headings {'prepended' if stored.get('headings', True) else 'not prepended'} when embedding · "
           f"model {info.model} reads at most {limit} tokens")
st.plotly_chart(token_chart({"stored chunks": [c["tokens"] for c in chunks]}, limit), width="stretch")

# --- one page with its chunk boundaries ------------------------------------------------------------------
st.subheader("Boundaries on the page text")
page_number = st.select_slider("Page", options=[p.number for p in pages], value=ui.telling_page(chunks, pages[0].number),
                               key="chunks_page", help="opens on the first page where chunks overlap visibly")
page = next(p for p in pages if p.number == page_number)
on_page = [c for c in chunks if c["page"] == page_number]
legend()
if not page.text.strip():
    st.info(f"Page {page_number} has no text{': ' + '; '.join(page.notes) if page.notes else ''}.")
else:
    st.html(ui.chunk_boundaries_html(page.text, [(c["start"], c["end"], c["index"]) for c in on_page]))
    st.caption(f"page {page_number}: {len(page.text)} characters from {page.source}"
               f"{' (OCR)' if page.ocr_used else ''}, {len(on_page)} chunks")
if on_page:
    st.dataframe(ui.chunk_rows(on_page), hide_index=True, width="stretch")

# --- re-chunking: preview, then apply -------------------------------------------------------------------
st.subheader("Try another size and overlap")
defaults = pipeline.IngestOptions()
with st.form("rechunk"):
    size_column, overlap_column = st.columns(2)
    size = size_column.number_input("Chunk size (tokens)", min_value=8, max_value=limit,
                                    value=min(int(stored.get("size", defaults.chunk_size)), limit), step=8,
                                    key="rechunk_size")
    overlap = overlap_column.number_input("Overlap (tokens)", min_value=0, max_value=limit - 1,
                                          value=min(int(stored.get("overlap", defaults.chunk_overlap)), limit - 1), step=4,
                                          key="rechunk_overlap")
    preview_clicked = st.form_submit_button("Preview")
if preview_clicked:
    with guarded("Previewing the re-chunking"):
        options = pipeline.IngestOptions(chunk_size=int(size), chunk_overlap=int(overlap))
        chunking = pipeline.chunking_options(embedder, options)
        chunking.validate()
        preview = pipeline.chunk_document(embedder, pages, chunking)
        st.session_state["rechunk_preview"] = (collection_name, doc_id, int(size), int(overlap), chunking.size,
                                               chunking.overlap, preview)

saved = st.session_state.get("rechunk_preview")
if saved and saved[:2] == (collection_name, doc_id):
    _, _, size_asked, overlap_asked, size_used, overlap_used, preview = saved
    after = ui.chunk_stats(preview)
    st.markdown(f"**Preview** (size {size_used}, overlap {overlap_used}"
                f"{' — clamped to what the model reads' if (size_used, overlap_used) != (size_asked, overlap_asked) else ''}): "
                f"{stats.count} → **{after.count}** chunks, {stats.mean_tokens:.0f} → **{after.mean_tokens:.0f}** tokens "
                f"on average, {after.overlapping} overlapping. Nothing is stored until you apply it.")
    st.plotly_chart(token_chart({"stored": [c["tokens"] for c in chunks], "preview": [c.tokens for c in preview]}, limit),
                    width="stretch")
    new_on_page = [c for c in preview if c.page == page_number]
    if page.text.strip():
        st.html(ui.chunk_boundaries_html(page.text, [(c.start, c.end, c.index) for c in new_on_page], height="20rem"))
        st.caption(f"page {page_number} with the new boundaries: {len(new_on_page)} chunks")
    if st.button(f"Apply: re-chunk and re-embed {record.name}", type="primary"):
        with guarded("Re-chunking"):
            bar = st.progress(0.0, text="embedding the new chunks")
            result = pipeline.rechunk(studio, collection_name, doc_id,
                                      pipeline.IngestOptions(chunk_size=size_used, chunk_overlap=overlap_used),
                                      progress=lambda e: bar.progress(e.done / e.total if e.total else 0.0,
                                                                      text=f"embedded {e.done}/{e.total} chunks"))
            st.session_state.pop("rechunk_preview", None)
            st.session_state["chunks_flash"] = [f"Re-chunked **{record.name}**: {result.chunks} chunks "
                                                f"in {result.seconds.get('total', 0):.1f} s."]
            st.rerun()
