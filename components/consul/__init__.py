"""Consul over its HTTP API: the client, and the dynamic resources (KV keys, agent registrations,
health gates) and the Alias component built on them."""
