"""Backends the proxy can talk to. Only this package imports httpx; `connect` picks one by kind.

Importing a module of this package loads only what that module needs: the protocols (`base`, `kinds`) and the
wire shapes (`tgi_wire`, `openai_wire`) are pure, for the text pipeline to use.
"""
