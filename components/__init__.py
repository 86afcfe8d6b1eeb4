"""Pulumi components and pure planning code for blue/green delivery on Docker, Consul and nginx."""
