"""Candidates for the parity suite: adapters for third-party libraries and a kernel-shaped torch candidate."""
