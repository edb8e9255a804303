"""Adapters that put third-party loss implementations under the suite (docs/third-party.md)."""
