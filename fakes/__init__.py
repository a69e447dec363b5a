"""Fake upstreams and a loopback server, for the tests and the soak run (never for the product).

`tgi/` is a fake TGI built from the recordings in `tests/fixtures/tgi/`, `hf_router.py` the HF router's
hf-inference provider in front of it, `openai.py` an OpenAI-style upstream replaying TGI's Messages API, and
`loopback.py` runs any ASGI app on a real socket. They live outside `tests/` so that the soak scripts use them
without importing test modules, and outside `server/` so that they are never installed with the product.
"""
