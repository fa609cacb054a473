//! The rolling-checksum core shared by the agent and the worker.
