"""The OpenAI API: request models, validation, translation to upstream parameters, the endpoints."""
