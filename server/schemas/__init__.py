"""Wire types: OpenAI requests (validated) and TGI payloads (typed dicts, no per-token objects)."""
