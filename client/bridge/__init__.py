"""`llm-ide serve`: the OpenAI and Anthropic HTTP APIs on the loopback interface, over one WebSocket.

- `errors`: the protocol's error codes as each API's status and error shape;
- `reply`: a chat's stream frames as API-neutral events (text, tool calls, the end), stop sequences applied;
- `openai_api`, `anthropic_api`: each API's requests into `chat.send` parameters, events into its answers;
- `backend`: the one multiplexed WebSocket, kept alive, reconnected and resumed;
- `server`: the aiohttp application (local key, Host check, routes, server-sent events).
"""
