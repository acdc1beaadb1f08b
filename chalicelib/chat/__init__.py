"""Chat: `chat.send` / `chat.cancel` (actions) and the bedrock_worker that streams a reply (worker)."""
