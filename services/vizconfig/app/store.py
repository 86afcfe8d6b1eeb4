"""Configuration documents as JSON strings in Redis, one key per id under a prefix."""

import json


class ConfigStore:
    def __init__(self, client, prefix: str):
        self.client = client
        self.prefix = prefix

    def ping(self) -> None:
        self.client.ping()

    def put(self, doc_id: str, document) -> None:
        self.client.set(self.prefix + doc_id, json.dumps(document))

    def get(self, doc_id: str):
        raw = self.client.get(self.prefix + doc_id)
        return None if raw is None else json.loads(raw)

    def delete(self, doc_id: str) -> bool:
        return bool(self.client.delete(self.prefix + doc_id))

    def ids(self) -> list:
        return sorted(k.decode()[len(self.prefix):] for k in self.client.scan_iter(self.prefix + "*"))
