# hf-openai-proxy: the OpenAI-compatible server, nothing else. Configure it with a mounted file
# (-v ./config.yaml:/app/config.yaml:ro) and/or HF_OPENAI_PROXY_* / ${VAR} environment variables (README, "Docker").
# tests/test_docker.py lints this file and replays its install and start steps in a fresh virtualenv.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HF_OPENAI_PROXY_SERVER__HOST=0.0.0.0 \
    HF_OPENAI_PROXY_SERVER__PORT=8000

WORKDIR /app

# Dependencies in a layer of their own, rebuilt only when pyproject.toml or the lock changes: install the project
# with an empty `server` package, at the versions requirements.lock pins (what the tests ran with), then remove
# the project itself and keep its dependencies.
COPY pyproject.toml README.md requirements.lock ./
RUN mkdir server && touch server/__init__.py \
    && pip install pip==26.3 \
    && pip install -c requirements.lock . \
    && pip uninstall --yes hf-openai-proxy \
    && rm -r server

COPY server/ server/
RUN pip install --no-deps .

COPY config.yaml ./

RUN groupadd --system --gid 10001 hfproxy \
    && useradd --system --no-create-home --uid 10001 --gid 10001 hfproxy
USER 10001:10001

EXPOSE 8000
# No curl in the slim image: Python asks /health (liveness; /ready also checks the upstream).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ['HF_OPENAI_PROXY_SERVER__PORT'], timeout=4)"]

CMD ["python", "-m", "server", "--config", "config.yaml"]
