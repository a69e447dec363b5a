"""The HTTP API: one module per endpoint family, thin: parse, plan, answer."""
