"""Settings are split by mode: base (shared), dev (`make run`), test (`make test`), prod."""
