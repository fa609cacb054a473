//! Table tests of the replication rules, on realistic objects and discovery documents.

mod fixtures;

mod budget;
mod immutable;
mod ingress;
mod kinds;
mod mark;
mod namespace;
mod patches;
mod pipeline;
mod prune;
mod pvcs;
mod references;
mod select;
mod services;
mod strip;
mod transform;
mod unsupported;
mod workloads;
