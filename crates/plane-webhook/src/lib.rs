//! Plane webhook verification, typed events and a durable de-duplication inbox.
//!
//! Not written yet: this crate is filled by the plane-webhook issue (#3). It
//! exports nothing, so nothing can depend on behaviour it does not have.
