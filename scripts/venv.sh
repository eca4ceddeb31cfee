# Sourced by the bash entry points: create or reuse $ROOT/.venv and install the project into it.
# VENV overrides the location; MEADOW_SKIP_INSTALL=1 uses the environment as it is.
ensure_venv() {
  if [[ "${MEADOW_SKIP_INSTALL:-0}" == "1" ]]; then return 0; fi
  local venv="${VENV:-$ROOT/.venv}"
  if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
  fi
  # shellcheck disable=SC1091
  source "$venv/bin/activate"
  local stamp="$venv/.meadow-installed"
  if [[ ! -f "$stamp" || "$ROOT/pyproject.toml" -nt "$stamp" ]]; then
    python -m pip install -q --upgrade pip
    # torch first, on its own: on CPU-only Linux the pinned CPU build avoids a multi-GB CUDA
    # download where a local wheel of it exists; elsewhere any torch satisfying pyproject will do.
    if ! python -c "import torch" 2>/dev/null; then
      python -m pip install -q "torch==2.13.0" || python -m pip install -q torch
    fi
    # torch is an optional extra of the project (a Mac may run MLX alone); this venv serves the
    # whole test suite and the torch recipes, so it asks for it.
    local extras="torch,dev,retrofit"
    case "$(uname -s)-$(uname -m)" in
      Darwin-arm64|Linux-*) extras="torch,dev,mlx,retrofit" ;;
    esac
    python -m pip install -q -e ".[${extras}]"
    touch "$stamp"
  fi
}
