"""The GitHub App integration: github.* actions served by the github_worker Lambda.

`params` (validation) is light and used by the message handler; the rest
(HTTP, PyJWT) is imported by the worker only, to keep the handler's cold start small.
"""
