#!/usr/bin/env bash
# Installs the headless ChimeraX test runtime into PREFIX (default .chimerax):
#   PREFIX/venv       its own virtualenv (ChimeraX wheel + pinned dependencies)
#   PREFIX/bin/chimerax  an executable taking the official app's headless flags
# Idempotent: a stamp holding the requirements' hash skips work already done.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$(mkdir -p "${1:-.chimerax}" && cd "${1:-.chimerax}" && pwd)
python=${PYTHON:-python3}
chimerax_pin="ChimeraX==0.1.71"   # yanked upstream ("import chimerax broken"): exact pin required
stamp="$prefix/.installed"
want=$(cat "$here/requirements.txt" "$here/install.sh" "$here"/cxs_runtime/*.py "$here"/cxs_runtime/*.json | sha256sum | cut -d" " -f1)

if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's libosmesa6 (offscreen rendering)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6 >/dev/null
  else
    echo "warning: OSMesa is missing; image saving will fail. Install it with: sudo apt-get install libosmesa6" >&2
  fi
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$prefix/bin/chimerax" ]; then
  echo "ChimeraX test runtime already installed in $prefix"
  exit 0
fi

[ -x "$prefix/venv/bin/python" ] || "$python" -m venv "$prefix/venv"
"$prefix/venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
"$prefix/venv/bin/pip" install -q --disable-pip-version-check --no-deps "$chimerax_pin"

# The launcher is copied in, so the installation is self-contained: a sandbox
# shows ChimeraX this folder (and the Python it links to), never the project.
rm -rf "$prefix/lib/cxs_runtime" && mkdir -p "$prefix/lib" "$prefix/bin"
cp -r "$here/cxs_runtime" "$prefix/lib/cxs_runtime"
"$prefix/venv/bin/python" -m compileall -q "$prefix/lib/cxs_runtime" >/dev/null || true
cat > "$prefix/bin/chimerax" <<SH
#!/bin/sh
# ChimeraX test runtime (PyPI library + cxs_runtime launcher). Flags as the official app.
PYTHONPATH="$prefix/lib" PYTHONUNBUFFERED=1 exec "$prefix/venv/bin/python" -m cxs_runtime "\$@"
SH
chmod +x "$prefix/bin/chimerax"
echo "$want" > "$stamp"
echo "ChimeraX test runtime installed: $prefix/bin/chimerax"
