"""Chat: where a `chat.send` goes, in the order it gets there.

actions.py (`chat.send`, `chat.cancel`, `models.list`) -> uploads.py (`chat.upload`; a body larger
than a frame, read and checked) -> request.py (the parameters, by the ChatPolicy: conversation.py
checks `messages` and their images (images.py), tools.py `tools` and `toolChoice`) -> inputs.py
(the session's history and the context files, sized; the whole input estimated) -> job.py (what
the bedrock_worker receives) -> worker.py (claims, loads the input, streams, settles) ->
converse.py (the Converse request; caching.py places its cache points) -> bedrock.py (the model
boundary: text deltas and whole tool calls) -> streaming.py (coalesced `delta` and `toolUse`
frames) ; requests.py keeps each chat's record (owner, status, cancel, an upload's use).
"""
