//! Table tests of the replication rules.
