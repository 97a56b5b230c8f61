"""ONNX Embedding Studio — the Streamlit entry point: ``streamlit run app.py``.

This file is two things. Run by Streamlit as ``__main__`` it is the app: page config, navigation
over the five pages in pages/, the shared sidebar, and the home page (what ONNX Runtime sees on this
machine and which provider really runs, the default model's state, the collections, where to start).
Imported as the module ``app`` (every page does ``from app import ...``) it is the glue the pages
share: the one Studio of the process, the error display, the collection picker. The glue lives here
because every ``.py`` file in pages/ is a page, and nothing Streamlit-specific may go into engine/.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import streamlit as st

from engine import ui
from engine.errors import StudioError

log = logging.getLogger("app")
TITLE = "ONNX Embedding Studio"


def studio():
    """The process's one Studio (registry + ONNX Runtime session cache), shared by every page and session.

    ``st.cache_resource`` keys a function by module, qualified name and source; home and pages all wrap
    the same function object, ``engine.ui.create_studio``, so they hit the same single cache entry.
    """
    return st.cache_resource(show_spinner="Starting the engine…")(ui.create_studio)()


def page_setup():
    """The Studio for a page; stops the page with a readable error if the engine cannot start
    (bad STUDIO_* settings, a broken models.yaml)."""
    _hand_over_to_navigation()
    try:
        return studio()
    except StudioError as exc:
        show_error(exc)
        st.stop()


def _hand_over_to_navigation() -> None:
    """Run a page reached the pages/-folder way inside app.py's st.navigation instead.

    Streamlit decides before a run whether an app with a pages/ folder uses folder auto-discovery,
    and only a call to st.navigation turns that off: the first run after the server starts (and
    every AppTest run) takes the folder route, so a deep link such as /Search runs the page file
    directly, without this app's navigation and sidebar. The page then runs main() right here:
    st.navigation switches the mode off and runs the same page (a page is identified by its
    url_path, which matches the folder-mode name) with all its widgets and their events; the outer
    run then stops. Later runs take the normal path and this is a no-op.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        main()
        st.stop()


def show_error(exc: StudioError) -> None:
    """A StudioError as the user should see it: the message, then what to do."""
    st.error(exc.message + (f"\n\n**What to do:** {exc.hint}" if exc.hint else ""), icon=":material/error:")


@contextlib.contextmanager
def guarded(action: str) -> Iterator[None]:
    """Run engine work so that a failure shows a message and a hint, never a traceback."""
    try:
        yield
    except StudioError as exc:
        show_error(exc)
    except Exception as exc:  # noqa: BLE001 - the last line of defence before the browser
        log.exception("%s failed", action)
        st.error(f"{action} failed unexpectedly ({type(exc).__name__}: {str(exc)[:300]}). "
                 "The details are in the server log.", icon=":material/error:")


def choose_collection(engine, key: str, extra: tuple[str, ...] = ()) -> str | None:
    """A collection picker that remembers the choice across pages (widget state does not survive a
    page switch, so the choice is kept under its own session key)."""
    from engine.collection import list_collections

    names = [c.name for c in list_collections(engine.settings.collections_dir)] + list(extra)
    if not names:
        return None
    if st.session_state.get(key) not in names:
        current = st.session_state.get("current_collection")
        st.session_state[key] = current if current in names else names[0]
    name = st.selectbox("Collection", names, key=key)
    if name not in extra:
        st.session_state["current_collection"] = name
    return name


def open_collection(engine, key: str):
    """The picked collection and its info, or a message and the end of the page run when there is none."""
    name = choose_collection(engine, key)
    if name is None:
        st.info("No collection yet: upload PDFs on the **Documents** page.", icon=":material/inbox:")
        st.stop()
    try:
        target = engine.collection(name)
        return target, target.info()
    except StudioError as exc:
        show_error(exc)
        st.stop()


def _hardware(engine) -> None:
    import onnxruntime as ort

    from engine import providers

    st.subheader("Hardware")
    st.caption(f"ONNX Runtime {ort.__version__} ({ort.get_device()} build), {providers.cpu_count()} CPU threads usable")
    rows = providers.status()
    st.dataframe(
        [{"provider": r.name, "available": r.available, "auto picks it": r.auto_candidate, "note": r.note} for r in rows],
        hide_index=True, width="stretch",
        column_config={"provider": st.column_config.TextColumn(width="small"),
                       "available": st.column_config.CheckboxColumn(width="small"),
                       "auto picks it": st.column_config.CheckboxColumn(width="small"),
                       "note": st.column_config.TextColumn(width="large")},
    )


def _default_model(engine) -> None:
    st.subheader("Default model")
    with guarded("Reading the default model"):
        spec = engine.registry.get(engine.registry.default_model)
        if spec.manifest is None:
            st.warning(f"**{spec.name}** is not converted yet.", icon=":material/build:")
            st.markdown(f"Convert it on the **Models** page, or run `python -m engine convert {spec.name}`.")
            return
        manifest = spec.manifest
        st.markdown(f"**{spec.name}** ({spec.hf_id}) — {manifest.dim} dimensions, "
                    f"{'+'.join(manifest.pooling_modes)} pooling, max {manifest.max_seq_length} tokens, "
                    f"variants: {', '.join(manifest.variants)}")
        embedder = engine.embedder(spec.name)
        parity = manifest.variants.get(embedder.variant)
        if parity and parity.parity:
            chosen = " (chosen by `auto`: the fastest with fp32 quality here)" if spec.default_variant == "auto" else ""
            st.caption(f"{embedder.variant}{chosen} vs sentence-transformers at conversion: min cosine "
                       f"{parity.parity.min_cosine:.6f}, max |diff| {parity.parity.max_abs_diff:.1e}")
        info = embedder.info()
        if info["fallback"]:
            st.warning(info["fallback"], icon=":material/error:")
        st.success(f"Really runs on **{info['provider']}** (asked: {info['provider_requested']}, "
                   f"variant {info['variant']}, session loaded in {info['load_seconds']:.2f} s)", icon=":material/check_circle:")


def _collections(engine) -> None:
    from engine.collection import scan_collections

    st.subheader("Collections")
    try:
        found, broken = scan_collections(engine.settings.collections_dir)
    except StudioError as exc:
        show_error(exc)
        return
    if not found and not broken:
        st.info("No collection yet: upload PDFs on the **Documents** page.", icon=":material/description:")
        return
    if found:
        st.dataframe(
            [{"collection": c.name, "model": c.model, "documents": len(c.documents), "chunks": c.chunk_count,
              "pages": sum(d.pages for d in c.documents), "created": c.created_at} for c in found],
            hide_index=True, width="stretch",
        )
    for item in broken:
        st.warning(f"**{item.name}** is broken: {item.error.message}"
                   + (f"\n\n**What to do:** {item.error.hint}" if item.error.hint else ""), icon=":material/error:")


def _try_it(engine) -> None:
    st.subheader("Try it")
    text = st.text_input("A sentence to embed", "ONNX Runtime turns PDFs into searchable knowledge.")
    if not text:
        return
    with guarded("Embedding"):
        embedder = engine.embedder()
        started = time.perf_counter()
        vector = embedder.embed([text])[0]
        elapsed = time.perf_counter() - started
        st.caption(f"{len(vector)} dimensions in {ui.format_ms(elapsed)} on {embedder.info()['provider']}")
        st.code("[" + ", ".join(f"{v:.4f}" for v in vector[:10]) + ", …]", language=None)


def home() -> None:
    engine = page_setup()
    st.title(TITLE)
    st.caption("PDFs to searchable knowledge with sentence-embedding models you control, on the hardware you have.")
    st.markdown("#### Start here")
    steps = st.columns(len(PAGES))
    for column, (script, title, icon, help_text) in zip(steps, PAGES):
        with column:
            st.page_link(script, label=title, icon=icon)
            st.caption(help_text)
    left, right = st.columns([3, 2])
    with left:
        _hardware(engine)
    with right:
        _default_model(engine)
    _collections(engine)
    _try_it(engine)


# (script, title, icon, what it is for). A page's URL is its title: the same name Streamlit's pages/
# folder mode gives the file, so both ways of reaching a page agree (see _hand_over_to_navigation).
PAGES = [
    ("pages/1_Models.py", "Models", ":material/deployed_code:", "convert a model (the default one works offline)"),
    ("pages/2_Documents.py", "Documents", ":material/upload_file:", "drop PDFs into a collection"),
    ("pages/3_Chunks.py", "Chunks", ":material/segment:", "see how the text was cut"),
    ("pages/4_Search.py", "Search", ":material/search:", "ask in your own words"),
    ("pages/5_Benchmarks.py", "Benchmarks", ":material/speed:", "compare providers and variants"),
]


# --- who may come in ------------------------------------------------------------------------------------
LOGIN_DELAY_S = (1.0, 2.0, 4.0, 8.0)  # after the 1st, 2nd, 3rd, 4th and later wrong password of a browser session


def _app_secret() -> str | None:
    from engine.settings import get_settings

    try:
        return get_settings().app_secret
    except StudioError:  # broken settings: the pages show the error; the secret, if any, is unreadable anyway
        import os

        return (os.environ.get("STUDIO_APP_PASSWORD") or os.environ.get("API_TOKEN") or "").strip() or "\0unreadable"


def signed_in() -> bool:
    """True when no password is configured, or this browser session has given it."""
    return _app_secret() is None or bool(st.session_state.get("signed_in"))


def sign_in() -> None:
    """The only page there is until the password (STUDIO_APP_PASSWORD, else API_TOKEN) was given: compared in
    constant time, with a growing delay after each wrong attempt, remembered for this browser session only."""
    from engine.httpauth import secret_matches

    st.title(TITLE)
    st.caption("This studio is protected: give its password (STUDIO_APP_PASSWORD, or the API token).")
    with st.form("sign_in"):
        given = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    secret = _app_secret()
    if secret is not None and secret_matches(given, secret):
        st.session_state["signed_in"] = True
        st.session_state.pop("sign_in_failures", None)
        log.info("app: a browser session signed in")
        st.rerun()
    failures = st.session_state.get("sign_in_failures", 0) + 1
    st.session_state["sign_in_failures"] = failures
    log.warning("app: wrong password (attempt %d of this browser session)", failures)
    time.sleep(LOGIN_DELAY_S[min(failures, len(LOGIN_DELAY_S)) - 1])
    st.error("Wrong password.", icon=":material/lock:")


@st.fragment(run_every=2.0)
def _ingest_jobs(engine) -> None:
    """Background ingests of this process, on every page's sidebar while they run."""
    for state in engine.jobs.running():
        st.progress(state.fraction, text=f"Ingesting into '{state.collection}': {state.describe()}")


def main() -> None:
    # st.navigation replaces Streamlit's pages/ auto-discovery: named pages, icons, lower-case URLs,
    # and this entry script runs before every page (page config, sidebar).
    st.set_page_config(page_title=TITLE, page_icon=":material/explore:", layout="wide")
    if not signed_in():
        # before anything else: one page, whatever URL was asked for
        st.navigation([st.Page(sign_in, title="Sign in", icon=":material/lock:", default=True)], position="hidden").run()
        st.stop()
    navigation = st.navigation(
        [st.Page(home, title="Home", icon=":material/home:", default=True)]
        + [st.Page(script, title=title, icon=icon, url_path=title) for script, title, icon, _ in PAGES]
    )
    try:
        engine = studio()
    except StudioError:
        engine = None  # the page shows the error
    if engine is not None:
        st.sidebar.caption(f"Data folder: `{engine.settings.data_dir}`")
        if engine.jobs.running():
            with st.sidebar:
                _ingest_jobs(engine)
    navigation.run()


if __name__ == "__main__":
    main()
