"""relaykit: a self-hosted AI API relay (one endpoint, every provider, metered and billed)."""

__version__ = "0.1.0"
