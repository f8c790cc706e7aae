"""The relay core: auth, pricing, channel selection, forwarding, metering and the pipeline
that puts them in order (pipeline.py)."""
