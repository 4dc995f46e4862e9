"""Send policies: per-org rules that limit marketing messages (`frequency`: at most N per contact in a
rolling window), set through the API (`service`) and enforced by the senders at send time."""
