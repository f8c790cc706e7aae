"""Wire formats.  One module per dialect; pure translators: no network, no DB, no clock.

The hub every conversion passes through is the OpenAI Chat Completions shape (see hub.py).
"""
