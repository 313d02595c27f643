"""Generated from schemas/proto by clients/python/scripts/generate.py: do not edit."""
