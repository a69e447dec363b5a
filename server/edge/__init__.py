"""The ASGI edge: body limits, the SSE response, access log, API keys, CORS, Host checks. No domain knowledge."""
