# Sourced by bin/trader and bin/test: make sure .venv exists and matches setup.cfg.
# Re-installs only when setup.cfg changed, so every later start costs a hash and a stat.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
ensure_venv() {
  local extras="$1" stamp want
  want="$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" | sha1sum | cut -c1-16)-$extras"
  stamp="$VENV/.wave-trader-installed"
  if [[ -x "$VENV/bin/python" && -f "$stamp" ]] && grep -qx -- "$want" "$stamp" 2>/dev/null; then
    return 0
  fi
  # A test install is a superset of the runtime one: the runtime needs nothing more.
  if [[ -z "$extras" && -f "$stamp" ]] && grep -qx -- "${want}test" "$stamp" 2>/dev/null; then
    return 0
  fi
  echo "wave-trader: preparing $VENV (first run or dependencies changed)…" >&2
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  local spec="$ROOT" log="$VENV/pip-install.log"
  [[ -n "$extras" ]] && spec="$ROOT[$extras]"
  if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
         "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$spec"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "wave-trader: installing dependencies failed; full log in $log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
}
