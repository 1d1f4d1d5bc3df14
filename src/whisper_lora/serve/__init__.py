"""The HTTP server: OpenAI-compatible routes, the realtime socket and the live page."""
