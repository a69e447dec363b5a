"""hf-openai-proxy: an OpenAI-compatible gateway for Hugging Face text-generation."""

__version__ = "0.1.0"
