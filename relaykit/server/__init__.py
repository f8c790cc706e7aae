"""The HTTP edge: app factory, middleware and thin handlers."""
