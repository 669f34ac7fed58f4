# Sourced by the other scripts: find Python >= 3.11, create .venv, install the project into it
# (again whenever pyproject.toml changes). Nothing to configure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WFE_VENV:-$ROOT/.venv}"

find_python() {
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "workflow-engine needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

ensure_venv() {
  local stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  if [ ! -x "$VENV/bin/python" ]; then
    local python
    python="$(find_python)"
    "$python" -m venv "$VENV" || {
      echo "could not create a virtualenv: on Debian/Ubuntu, apt-get install python3-venv" >&2
      return 1
    }
  fi
  if [ ! -f "$stamp" ]; then
    echo "installing workflow-engine and its dependencies into $VENV ..." >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
}

ensure_venv
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
