"""The operator's command line (Typer).  Commands are thin: parse, call the store or the
server, render with output.py (the only module that imports rich)."""
