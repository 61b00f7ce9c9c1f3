"""Durable storage shared by every stage: the request store (answered model requests, keyed by model
identity, backend identity and request) and the SQLite helpers the judge cache uses too."""

from evalsuite.store.identity import model_identity
from evalsuite.store.requests import RequestStore, canonical, request_key
from evalsuite.store.sqlite import Database, StoreError, TextCache

__all__ = ["Database", "RequestStore", "StoreError", "TextCache", "canonical", "model_identity", "request_key"]
