"""The output stage: one choice's released text in, the pieces an answer is made of out.

Between a choice's token stream (`server.generation.choice`, which trims stop strings and pairs text with its
logprobs) and the formats sits an `OutputParser`. Today every model's output is plain text (`PassThrough`).
Parsers for tool calls and reasoning plug in here, one module per format behind the same interface, as vLLM
keeps its tool parsers (vllm-project/vllm, `vllm/entrypoints/openai/tool_parsers/`).
"""
