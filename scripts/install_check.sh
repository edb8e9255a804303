#!/usr/bin/env bash
# The suite as a user gets it: the wheel built from this checkout, installed in a fresh venv, run from a project of
# the user's own that has a module named `reference` and a correct implementation of its own.
#
#   scripts/install_check.sh [WORK_DIR]        # make install-check; needs PYTHON and, to install torch, TORCH_SPEC
#
# It checks that the plugin stays inert without --impl (the user's own tests run, nothing is written), that
# `--pyargs parity_tests --impl ...` passes for a correct implementation and fails for a wrong one, and that the
# user's `reference` is never taken for the suite's truth.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d)}
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch}
TORCH_INDEX=${TORCH_INDEX:-}
mkdir -p "$WORK"
rm -rf "$WORK/dist" "$WORK/venv" "$WORK/project"

echo "== the wheel"
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$ROOT"
wheel=$(ls "$WORK"/dist/loss_parity-*.whl)
"$PY" -m zipfile -l "$wheel" > "$WORK/wheel.txt"
if grep -qE '^(reference|lessons|examples|tests|benchmarks)/' "$WORK/wheel.txt"; then
  echo "the wheel ships a generic top-level package"; exit 1
fi

echo "== a fresh venv"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install --quiet ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} "$TORCH_SPEC"
"$VPY" -m pip install --quiet "$wheel[test]"

echo "== a user's project"
mkdir -p "$WORK/project"
cd "$WORK/project"
cat > reference.py <<'EOF'
"""The user's own module named reference: never the suite's truth."""
raise ImportError("the user's reference was imported")
EOF
cat > my_losses.py <<'EOF'
"""A correct implementation: torch's own functionals, as a torch candidate."""
import torch.nn.functional as F

LOSS_PARITY_KIND = "torch"
cross_entropy = F.cross_entropy
nll_loss = F.nll_loss
binary_cross_entropy = F.binary_cross_entropy
binary_cross_entropy_with_logits = F.binary_cross_entropy_with_logits
EOF
cat > wrong_losses.py <<'EOF'
"""A wrong implementation: the loss of cross_entropy 1% too large."""
import torch.nn.functional as F

LOSS_PARITY_KIND = "torch"


def cross_entropy(*args, **kwargs):
    return F.cross_entropy(*args, **kwargs) * 1.01
EOF
cat > test_mine.py <<'EOF'
def test_the_users_own_test():
    assert 1 + 1 == 2
EOF

echo "== inert without --impl"
"$VPY" -m pytest -q -p no:cacheprovider test_mine.py
[ ! -e reports ] || { echo "a run without --impl wrote reports/"; exit 1; }
"$VPY" -m pytest --help > help.txt
grep -q -- "--impl" help.txt || { echo "--impl is not among pytest's options"; exit 1; }

echo "== a correct implementation passes"
"$VPY" -m pytest -q -p no:cacheprovider --pyargs parity_tests --impl my_losses -n 2 --dtype float32
grep -q '^PASS: ' reports/latest/summary.md

echo "== a wrong one fails, naming the candidate"
set +e
"$VPY" -m pytest -q -p no:cacheprovider --pyargs parity_tests --impl wrong_losses --loss cross_entropy \
  --dtype float32 -k "test_parity and ii-100-mean" > wrong.log 2>&1
status=$?
set -e
[ "$status" = 1 ] || { cat wrong.log; echo "expected exit 1, got $status"; exit 1; }
grep -q "the candidate is wrong" wrong.log
echo "install check: OK ($WORK)"
