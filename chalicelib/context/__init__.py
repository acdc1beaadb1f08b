"""Context files: a user's files for the model (`context.*` actions, the ContextStore)."""
