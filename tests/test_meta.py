"""Every registered model must be named by a test module (STYLE: a meta-test fails if a
registered model has no test). Parametrised registry tests cover shapes; this checks that
each model also has model-specific tests."""
from pathlib import Path

import modelzoo

TESTS = Path(__file__).parent


def test_every_registered_model_has_tests():
    text = "\n".join(p.read_text() for p in TESTS.rglob("test_*.py") if p.name != "test_meta.py")
    missing = [m for m in modelzoo.list_models() if f'"{m}"' not in text]
    assert not missing, f"registered models with no dedicated test: {missing}"
