"""Errors shared by the transport's modules."""


class TransientSyncError(Exception):
    """A batch could not be processed completely now; it must not be skipped."""
