"""Answer shapes, one module per endpoint: a stream format renders one streamed answer's events as SSE bytes,
an answer format renders a whole answer as a JSON object (`base` holds the two interfaces)."""
