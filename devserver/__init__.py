"""The local stack behind `make dev`: AWS emulated at the HTTP boundary, the app's real handlers."""
