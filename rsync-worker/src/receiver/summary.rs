//! What a pull reports: [`SyncSummary`], the worker's JSON output. The type is the wire
//! contract's (`dr-syncer-worker-wire`), so the worker and the controller read one definition.

pub use dr_syncer_worker_wire::SyncSummary;
