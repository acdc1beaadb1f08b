"""Logs, metrics and traces: what an on-call engineer reads, at no start-up cost."""
from chalicelib.observability.logs import bind, configure_logging, current_context, with_current_context

__all__ = ["bind", "configure_logging", "current_context", "with_current_context"]
