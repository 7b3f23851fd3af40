"""Reproductions and studies that use the product but are not part of it (nothing imports them)."""
