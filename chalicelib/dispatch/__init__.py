"""The WebSocket dispatch: $connect/$default/$disconnect handlers, the connection registry,
the action contract and the one table of actions."""
