"""Test helpers that ship with the library: a fault-injecting local data portal."""
