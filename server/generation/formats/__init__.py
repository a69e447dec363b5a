"""Response shapes, streamed and whole."""
