//! Kubernetes plumbing every reconciler shares, and nothing else: how the controller
//! writes (server-side apply under one field manager), how it publishes Events, how it
//! waits for an object by watch with a deadline, and the size limits of what it writes.
//!
//! These modules depend on no other module of the crate, so any module may use them
//! without importing the reconcilers' [`Context`](crate::context::Context).
//!
//! - [`apply`]: the field manager and server-side apply of status.
//! - [`events`]: Events on our objects (advisory: failures are logged, never fatal).
//! - [`wait`]: await a condition on one object by watch, with a deadline.
//! - [`text`]: cutting messages to the length a field accepts.
//! - [`requeue`]: the error policy of the reconcilers (log, requeue later).

pub mod apply;
pub mod events;
pub mod requeue;
pub mod text;
pub mod wait;

pub use apply::{FIELD_MANAGER, apply_status};
pub use events::{CONTROLLER_NAME, EventPublisher};
pub use requeue::requeue_after_error;
pub use text::truncate;
