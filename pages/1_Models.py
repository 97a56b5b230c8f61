"""Models: the registry with parity figures, Hugging Face search, conversion (out of this process), deletion."""

from __future__ import annotations

import streamlit as st

from app import guarded, page_setup, show_error
from engine import conversion, hub, ui
from engine.collection import list_collections
from engine.errors import HubOfflineError, InputError, StudioError
from engine.manifest import VARIANTS

studio = page_setup()
st.title("Models")
for message in st.session_state.pop("models_flash", []):
    st.success(message, icon=":material/check_circle:")

# --- the registry -------------------------------------------------------------------------------------
specs = studio.registry.list()
st.subheader("Registry")
st.caption("Curated models from models.yaml plus every converted folder. Parity: the converted ONNX model "
           "against sentence-transformers on the same texts, measured at conversion.")
st.dataframe(ui.model_rows(specs), hide_index=True, width="stretch")

converted = [s for s in specs if s.converted]
if converted:
    with st.expander("Variants and parity of a converted model"):
        chosen = st.selectbox("Model", [s.name for s in converted], key="detail_model")
        spec = next(s for s in converted if s.name == chosen)
        st.dataframe(ui.variant_rows(spec.manifest), hide_index=True, width="stretch")
        manifest = spec.manifest
        st.caption(f"source {manifest.source} @ {manifest.revision[:12] or '—'} · ONNX output {manifest.onnx_output} · "
                   f"opset {manifest.opset} · pooling from {manifest.pooling_source} · "
                   f"converted {manifest.converted_at} in {manifest.conversion_seconds:.0f} s")
        for note in manifest.notes:
            st.caption(f"• {note}")
        if ui.openvino_parity_missing(manifest):
            st.caption("• No parity on OpenVINO in this manifest: the model was converted where the openvino package "
                       "was not installed. Convert it again (Force) to measure it; until then the auto variant checks "
                       "OpenVINO on its own probe.")

# --- Hugging Face search -------------------------------------------------------------------------------------
st.subheader("Find a model on Hugging Face")
with st.form("hub_search"):
    query = st.text_input("Search sentence-similarity models", placeholder="e.g. bge, e5, minilm")
    searched = st.form_submit_button("Search the hub")
if searched:
    try:
        with st.spinner("Asking the hub…"):
            st.session_state["hub_results"] = hub.search_models(query, limit=20)
    except HubOfflineError as exc:
        st.session_state.pop("hub_results", None)
        st.info(f"**Offline.** {exc.message}\n\n{exc.hint}", icon=":material/cloud_off:")
    except StudioError as exc:
        st.session_state.pop("hub_results", None)
        show_error(exc)
results = st.session_state.get("hub_results")
if results is not None:
    if not results:
        st.info("No sentence-similarity model matches that search.")
    else:
        st.dataframe([{"id": m.id, "downloads": m.downloads, "likes": m.likes, "library": m.library or "",
                       "updated": m.last_modified[:10]} for m in results], hide_index=True, width="stretch")
        picked = st.selectbox("Inspect", [m.id for m in results], key="hub_pick")
        if st.button("Show details"):
            with guarded("Reading the model card"):
                info = hub.model_info(picked)
                st.markdown(f"**{info.id}** @ `{info.sha[:12]}` — "
                            f"{'sentence-transformers model' if info.is_sentence_transformers else 'plain transformers model'}"
                            f"{', gated' if info.gated else ''}{', ships custom code' if info.custom_code else ''}; "
                            f"{len(info.files)} files.")
                st.session_state["convert_source"] = info.id

# --- conversion --------------------------------------------------------------------------------------------
st.subheader("Convert a model to ONNX")
st.caption("The converter runs in its own process (torch never loads into this app) and checks parity "
           "against sentence-transformers for every variant it writes.")
registry_names = [s.name for s in specs if s.curated]
OTHER = "another model (Hugging Face id or local folder)"
with st.form("convert"):
    choice = st.selectbox("Model", [*registry_names, OTHER],
                          index=len(registry_names) if st.session_state.get("convert_source") else 0, key="convert_model")
    source = st.text_input("Hugging Face id or local folder (for 'another model')",
                           value=st.session_state.get("convert_source", ""), placeholder="BAAI/bge-small-en-v1.5",
                           key="convert_source_input")
    name = st.text_input("Name in the studio (optional)", placeholder="default: from the model id", key="convert_name")
    variants = st.multiselect("Variants", list(VARIANTS), default=["fp32", "int8"], key="convert_variants",
                              help="fp32 is the reference; optimized = ORT fusions; fp16 for GPUs; int8 for CPUs")
    trust = st.checkbox("Allow the model's own Python code (trust_remote_code)", value=False)
    force = st.checkbox("Replace an existing conversion", value=False)
    go = st.form_submit_button("Convert", type="primary")
if go:
    model = source.strip() if choice == OTHER else choice
    try:
        if not model:
            raise InputError("Give a Hugging Face id or a local folder to convert.",
                                        "e.g. BAAI/bge-small-en-v1.5 or /path/to/a/sentence-transformers/folder")
        request = conversion.plan(studio.registry, model, name.strip() or None, tuple(variants) or None, trust, force)
        with st.status(f"Converting {request.source} → {request.name}", expanded=True) as status:
            bar = st.progress(0.0, text="starting the converter")

            def on_progress(step: str, fraction: float) -> None:
                bar.progress(min(1.0, max(0.0, fraction)), text=step)

            result = conversion.run(request, studio.settings.models_dir, progress=on_progress)
            studio.forget(request.name)
            status.update(label=f"Converted {request.name} in {result.get('conversion_seconds', 0):.0f} s",
                          state="complete")
        parity = ", ".join(f"{v}: min cos {r['min_cosine']:.6f}" for v, r in result["variants"].items() if "min_cosine" in r)
        st.session_state["models_flash"] = [f"Converted **{request.name}** ({result['dim']} dimensions). {parity}"]
        st.rerun()
    except StudioError as exc:
        show_error(exc)

# --- deletion ---------------------------------------------------------------------------------------------
st.subheader("Delete a converted model")
if not converted:
    st.caption("No converted model.")
else:
    with st.form("delete"):
        doomed = st.selectbox("Model", [s.name for s in converted], key="delete_model")
        sure = st.checkbox("Yes, delete its ONNX files (the registry entry stays; it can be converted again)")
        delete = st.form_submit_button("Delete")
    if delete:
        using = ui.collections_using(list_collections(studio.settings.collections_dir), doomed)
        if not sure:
            st.warning("Tick the box to confirm.", icon=":material/touch_app:")
        else:
            with guarded("Deleting the model"):
                ui.delete_model_folder(studio.settings.models_dir, doomed)
                studio.forget(doomed)
                note = (f" Collections {', '.join(using)} were built with it: they cannot be searched until it is "
                        "converted again.") if using else ""
                st.session_state["models_flash"] = [f"Deleted **{doomed}**.{note}"]
                st.rerun()
