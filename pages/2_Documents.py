"""Documents: drag-and-drop PDFs (or page images) into a collection, with the OCR engine of your choice,
progress per page, a status per file, page thumbnails, and deletion. The ingest runs as a background
job of the Studio (engine/jobs.py): opening another page does not stop it, and this page shows its
progress or its result when the user comes back."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import choose_collection, guarded, page_setup, show_error
from engine import pipeline, ui
from engine.errors import EncryptedDocumentError, StudioError
from engine.page_extraction import list_engines

studio = page_setup()
NEW = "+ new collection"
st.title("Documents")
for message in st.session_state.pop("documents_flash", []):
    st.success(message, icon=":material/check_circle:")


@st.cache_data(ttl=60, show_spinner="Checking the OCR engines…")
def ocr_engines() -> list:
    # Availability changes only when keys, servers or packages change: a minute of caching is plenty.
    return list_engines()


@st.cache_data(max_entries=32, show_spinner=False)
def thumbnails(path: str, mtime: float, numbers: tuple[int, ...], width: int, password: str | None, name: str) -> list:
    return ui.thumbnail_pngs(Path(path), numbers, width, password, name)


# --- where and how ------------------------------------------------------------------------------------
left, right = st.columns([1, 1])
with left:
    collection_name = choose_collection(studio, "documents_collection", extra=(NEW,)) or NEW
    model = None
    if collection_name == NEW:
        collection_name = st.text_input("New collection name", value="documents", key="new_collection",
                                        help="letters, digits, '.', '_', '-' (max 64)").strip()
        try:
            pipeline.collection(studio, collection_name)  # validates the name before anything is uploaded
        except StudioError as exc:
            show_error(exc)
            collection_name = ""
        converted = [s.name for s in studio.registry.list() if s.converted]
        if not converted:
            st.warning("No converted model yet: convert one on the Models page first.", icon=":material/build:")
        else:
            default = studio.registry.default_model
            model = st.selectbox("Embedding model for the new collection", converted,
                                 index=converted.index(default) if default in converted else 0)
with right:
    engines = ocr_engines()
    by_label = {ui.ocr_label(a): a for a in engines}
    picked = by_label[st.selectbox("Text extraction / OCR", list(by_label), key="ocr_engine",
                                   help="auto: the PDF's text layer where it is good, local OCR where it is not")]
    if picked.available:
        st.caption(picked.reason or f"{picked.engine} is available")
    else:
        st.warning(f"{picked.engine} is not available here: {picked.reason}", icon=":material/block:")
        if picked.hint:
            st.caption(picked.hint)
    with st.expander("OCR engines on this machine"):
        st.dataframe([{"engine": a.engine, "available": a.available, "why not / how": a.reason if a.available else
                       f"{a.reason} — {a.hint}".strip(" —")} for a in engines], hide_index=True, width="stretch")

with st.expander("Password and chunking"):
    password = st.text_input("Password for encrypted PDFs (kept only in this browser session)", type="password")
    size_column, overlap_column = st.columns(2)
    defaults = pipeline.IngestOptions()
    chunk_size = size_column.number_input("Chunk size (tokens)", min_value=8, max_value=8192, value=defaults.chunk_size, step=8)
    chunk_overlap = overlap_column.number_input("Overlap (tokens)", min_value=0, max_value=4096, value=defaults.chunk_overlap,
                                                step=4)
    force = st.checkbox("Re-ingest files that are already in the collection")

# --- upload and ingest --------------------------------------------------------------------------------
uploads = st.file_uploader(f"Drop PDFs here (up to {studio.settings.max_upload_mb} MB each)",
                           type=["pdf", "png", "jpg", "jpeg"], accept_multiple_files=True, key="uploads")
can_ingest = bool(uploads) and picked.available and bool(collection_name)
if st.button(f"Ingest {len(uploads or [])} file(s) into '{collection_name or '…'}'", type="primary", disabled=not can_ingest):
    options = pipeline.IngestOptions(ocr=picked.engine, password=password or None, model=model,
                                     chunk_size=int(chunk_size), chunk_overlap=int(chunk_overlap), force=force)
    try:
        pipeline.check_options(options, studio.settings)  # as the CLI does: a bad overlap is refused, not lowered
        # a background job of the Studio: it goes on when the user opens another page meanwhile
        job = studio.jobs.start(collection_name, [(upload.name, upload.getvalue()) for upload in uploads], options,
                                extra={"password": password or None})
    except StudioError as exc:
        show_error(exc)
    else:
        st.session_state["ingest_job"] = job.id
        st.session_state.pop("ingest_results", None)


def finish(state, own: bool) -> None:
    """A job has ended: keep its results for display and show its collection. Only a job this session started
    hands over the password it was given (for the page images)."""
    secret = studio.jobs.extra(state.id).get("password") if own else None
    for result in state.results:
        if result.ok and secret and result.doc_id:
            st.session_state.setdefault("doc_passwords", {})[result.doc_id] = secret
    st.session_state["ingest_results"] = list(state.results)
    if state.message:
        st.session_state["ingest_results"].append(
            pipeline.IngestResult("(ingest)", False, error={"message": state.message, "hint": "see the server log"}))
    st.session_state.pop("ingest_job", None)
    if state.ok_count:  # show the collection that now exists instead of "new collection"
        st.session_state["current_collection"] = state.collection
        st.session_state.pop("documents_collection", None)  # the picker re-selects from current_collection


@st.fragment(run_every=1.0)
def job_progress(job_id: str, own: bool) -> None:
    """A running ingest, refreshed every second: this session's, or one another session (or this one before a
    reload) started into the collection shown; its results stay on the page when it ends."""
    state = studio.jobs.get(job_id)
    if state is None:
        st.session_state.pop("ingest_job", None)
        return
    if state.running:
        title = (f"Ingesting {ui.plural(len(state.files), 'file')} into '{state.collection}'…" if own
                 else f"Another session is ingesting {ui.plural(len(state.files), 'file')} into '{state.collection}'…")
        status = st.status(title, expanded=True, state="running")  # not `with`: leaving it would mark it complete
        status.progress(state.fraction, text=state.describe())
        for result in state.results:
            status.caption(f"{'✓' if result.ok else '✗'} {result.file}")
        status.caption("You can open other pages meanwhile: the ingest goes on, and this page shows the result.")
        return
    finish(state, own)
    st.rerun()  # the whole page: the collection below now holds the new documents


job_id = st.session_state.get("ingest_job")
if job_id is None:  # an ingest another browser session (or this one, before a reload) started into this collection
    other = studio.jobs.latest(collection_name) if collection_name and collection_name != NEW else None
    if other is not None and other.running:
        job_progress(other.id, own=False)
elif studio.jobs.get(job_id) is not None:
    job_progress(job_id, own=True)
else:
    st.session_state.pop("ingest_job", None)

for result in st.session_state.get("ingest_results", []):
    if result.ok and result.skipped:
        st.info(f"**{result.file}** is already in the collection ({result.chunks} chunks); tick re-ingest to redo it.",
                icon=":material/info:")
    elif result.ok:
        seconds = result.seconds.get("total", 0.0)
        ocr = f", {ui.plural(result.ocr_pages, 'page')} by OCR" if result.ocr_pages else ""
        st.success(f"Ingested **{result.file}**: {ui.plural(result.pages, 'page')}, {ui.plural(result.chunks, 'chunk')}{ocr} "
                   f"in {seconds:.1f} s",
                   icon=":material/check_circle:")
    else:
        error = result.error or {}
        show_error(StudioError(f"{result.file}: {error.get('message', 'could not be ingested')}", error.get("hint", "")))

# --- the collection ------------------------------------------------------------------------------------------
st.divider()
try:
    target = pipeline.collection(studio, collection_name) if collection_name and collection_name != NEW else None
except StudioError as exc:  # an invalid new collection name
    show_error(exc)
    st.stop()
if target is None or not target.exists:
    st.info("This collection is empty: drop PDFs above.", icon=":material/inbox:")
    st.stop()
with guarded("Reading the collection"):
    info = target.info()
    st.subheader(f"Collection '{info.name}'")
    st.caption(f"model {info.model} ({info.variant}, {info.dim} dimensions) · {ui.plural(len(info.documents), 'document')} · "
               f"{info.chunk_count} chunks · created {info.created_at}")
    if not info.documents:
        st.info("No document in this collection.")
        st.stop()
    st.dataframe([{"document": d.name, "pages": d.pages, "chunks": d.chunks, "OCR": d.ocr_engine,
                   "OCR pages": d.ocr_pages, "size": ui.format_bytes(d.size_bytes), "ingested": d.ingested_at,
                   "notes": "; ".join(d.notes[:3])} for d in info.documents], hide_index=True, width="stretch")
    names = {d.doc_id: d.name for d in info.documents}
    doc_id = st.selectbox("Document", list(names), format_func=names.get, key="documents_doc")
    record = info.document(doc_id)
    original = target.original_of(doc_id)
    thumbs_column, actions_column = st.columns([4, 1])
    with thumbs_column:
        if original is None:
            st.caption("No stored copy of this file, so no page images.")
        else:
            first = st.number_input("First page shown", min_value=1, max_value=record.pages, value=1, step=12) \
                if record.pages > 12 else 1
            numbers = tuple(range(int(first), min(record.pages, int(first) + 11) + 1))
            secret = st.session_state.get("doc_passwords", {}).get(doc_id)
            try:
                images = thumbnails(str(original), original.stat().st_mtime, numbers, 180, secret, record.name)
            except EncryptedDocumentError as exc:  # a later browser session: the password is not kept on the server
                st.caption(f"Page images are not available: {exc.message}")
                given = st.text_input("Password to show its pages (kept only in this browser session)", type="password",
                                      key=f"unlock_{doc_id}")
                if given:
                    st.session_state.setdefault("doc_passwords", {})[doc_id] = given
                    st.rerun()
            except StudioError as exc:
                st.caption(f"Page images are not available: {exc.message}")
            else:
                grid = st.columns(6)
                for position, (number, png) in enumerate(images):
                    grid[position % 6].image(png, caption=f"page {number}", width="stretch")
    with actions_column:
        st.markdown("**Delete**")
        # one confirmation per document, dropped once used: the next document selected after a delete starts unticked
        # (it was one key for all, still ticked, so a second click deleted the next document too)
        sure = st.checkbox("Confirm", key=f"confirm_delete_{doc_id}")
        if st.button("Delete document", disabled=not sure):
            target.delete_document(doc_id)
            st.session_state["documents_flash"] = [f"Deleted **{record.name}** from '{info.name}'."]
            for key in (f"confirm_delete_{doc_id}", "ingest_results", "search_result"):
                st.session_state.pop(key, None)
            st.rerun()
