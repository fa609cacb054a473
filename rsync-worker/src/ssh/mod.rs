//! SSH transport of the data plane (agent server, worker client). Filled in by the SSH layer.
