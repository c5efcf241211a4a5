"""The part of NSML that runs inside the user's training process.

Everything here is imported by ``import nsml`` (directly or lazily), so it must stay light:
standard library only, and anything slow to import (json, pickle, urllib, tarfile) is imported
inside the function that first needs it. See docs/internals.md for the contract with the
supervisor that picks up what this package writes.
"""
