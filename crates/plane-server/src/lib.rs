//! The `plane-server` service: webhook receiver, inbox worker, health, metrics, CLI.
//!
//! Not written yet: this crate is filled by the plane-server issue (#5). It
//! exports nothing, so nothing can depend on behaviour it does not have.
