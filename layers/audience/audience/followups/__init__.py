"""Follow-ups of idle conversations, follow-ups requested for a time, and the outbound messages that start them."""
