"""The upstream-agnostic text pipeline: jobs, choices, stops, fan-out, streams and whole answers.

No FastAPI, no httpx: checked by the import contracts in pyproject.toml.
"""
