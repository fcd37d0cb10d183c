"""The `llm-manager` command line: thin typer commands over `LLMManager`."""
