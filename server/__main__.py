"""`python -m server`, the same as the `hf-openai-proxy` command."""

from server.cli import main

if __name__ == "__main__":
    main()
