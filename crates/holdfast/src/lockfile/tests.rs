//! Unit tests that need the module's internals.
