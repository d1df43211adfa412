//! One file per isolation mechanism, each implementing [`crate::Backend`].

pub mod container;
pub mod microvm;
pub mod runc;
