"""Chat: where a `chat.send` goes, in the order it gets there.

actions.py (`chat.send`, `chat.cancel`) -> request.py (the parameters, by the ChatPolicy)
-> inputs.py (the session's history and the context files, sized) -> job.py (what the
bedrock_worker receives) -> worker.py (claims, loads the input, streams, settles) ->
converse.py (the Converse request) -> bedrock.py (the model boundary) -> streaming.py
(coalesced `delta` frames) ; requests.py keeps each chat's record (owner, status, cancel).
"""
