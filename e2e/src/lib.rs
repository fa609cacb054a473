//! The local multi-cluster test bed.
