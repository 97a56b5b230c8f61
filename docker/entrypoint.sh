#!/bin/sh
# Container entry point: put the default model (converted at image build time) into the data
# volume when it is not there yet, then run the command (the API, the app, ...).
set -eu
models="${STUDIO_DATA_DIR:-/data}/models"
seed=/opt/studio/seed/models
if [ -d "$seed" ]; then
  mkdir -p "$models" 2>/dev/null || true
  for model in "$seed"/*; do
    [ -d "$model" ] || continue
    name=$(basename "$model")
    if [ ! -e "$models/$name" ]; then  # never touch a folder that is there, even a broken one
      if cp -R "$model" "$models/$name.seeding" 2>/dev/null && mv "$models/$name.seeding" "$models/$name"; then
        echo "entrypoint: seeded $name into $models" >&2
      else
        rm -rf "$models/$name.seeding" 2>/dev/null || true
        echo "entrypoint: could not write $models (owned by another user?); $name is not seeded" >&2
      fi
    fi
  done
fi
exec "$@"
