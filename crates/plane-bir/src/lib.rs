//! Philippine BIR filing deadlines, synced into Plane as work items.
//!
//! Not written yet: this crate is filled by a later issue. It exports nothing,
//! so nothing can depend on behaviour it does not have.
