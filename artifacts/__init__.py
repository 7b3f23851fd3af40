"""Artifacts: the versioned store, manifests, signatures, pull and verify."""
