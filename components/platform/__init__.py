"""The shared platform: Consul agents, the in-house registry, the proxy, and Docker hosts."""
