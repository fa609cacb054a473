//! Filled in by the data-plane core (work in progress).
