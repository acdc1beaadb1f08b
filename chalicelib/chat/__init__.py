"""Chat: where a `chat.send` goes, in the order it gets there.

actions.py (`chat.send`, `chat.cancel`, `chat.countTokens`, `models.list`) -> uploads.py
(`chat.upload`; a body larger than a frame, read and checked) -> request.py (the parameters, by the
ChatPolicy: conversation.py checks `messages` and their images (images.py), tools.py `tools` and
`toolChoice`) -> inputs.py (the session's history and the context files, sized; the whole input
counted by Bedrock, counting.py, or bounded above, input_bound.py) -> job.py (what the
bedrock_worker receives) -> worker.py (claims, acks, loads the input, streams, settles) ->
converse.py (the Converse request; caching.py places its cache points) -> bedrock.py (the model
boundary: text deltas and whole tool calls) -> streaming.py (the ack, then coalesced `delta` and
`toolUse` frames, kept and posted by one thread, moved by a resume) -> replay.py (the frames kept
after the end) ; requests.py keeps each chat's record (owner, status, cancel, resumes, how it ended,
an upload's use) ; resume.py (`chat.resume`: to the worker through the record, or a replay of an
ended chat). `python -m bench.chat_path` lists every module, here and outside, that one chat runs
code in.
"""
