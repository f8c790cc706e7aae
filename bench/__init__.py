"""relaykit's benchmark (scripts/bench): a fast fake upstream, a load generator, and the
runner that compares relayed with direct calls in the same run."""
