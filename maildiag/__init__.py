"""maildiag: explains why a mailbox does not work."""

__version__ = "0.1.0"
