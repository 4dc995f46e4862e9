"""Broadcasts: one message sent to many contacts over their channels.

A marketing broadcast is scheduled once and sent to an audience; a transactional broadcast stays active and
sends its message each time it is triggered. `models` holds the lifecycle and the message templates with
their validation; `render` turns a template and one contact into the message a provider sends.
"""
