"""The terminal commands of `llm-ide`, one module per group; each `register`s its subcommands."""
