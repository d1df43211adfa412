//! One file per isolation mechanism, each implementing [`crate::Backend`], and the one registry that
//! maps command-line names to them. Adding a peer is one new file here plus one line in [`REGISTRY`].

pub mod container;
pub mod microvm;
pub mod mock;
pub mod qemu;
pub mod runc;

use crate::backend::Backend;

/// A backend the command line can name.
struct Entry {
    name: &'static str,
    /// Hidden entries (the mock) work by name but are not offered in help or `backend_names`.
    listed: bool,
    make: fn() -> Box<dyn Backend>,
}

const REGISTRY: &[Entry] = &[
    Entry {
        name: "runc",
        listed: true,
        make: || Box::new(runc::RuncBackend::new()),
    },
    Entry {
        name: "microvm",
        listed: true,
        make: || Box::new(microvm::MicrovmBackend::from_env()),
    },
    Entry {
        name: "qemu",
        listed: true,
        make: || Box::new(qemu::QemuBackend::new()),
    },
    Entry {
        name: "mock",
        listed: false,
        make: || Box::new(mock::MockBackend::from_env()),
    },
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {name:?} (expected one of: {})", backend_names().join(", "))]
pub struct UnknownBackend {
    pub name: String,
}

/// The backend called `name` on the command line.
pub fn backend_by_name(name: &str) -> Result<Box<dyn Backend>, UnknownBackend> {
    REGISTRY
        .iter()
        .find(|e| e.name == name)
        .map(|e| (e.make)())
        .ok_or_else(|| UnknownBackend {
            name: name.to_string(),
        })
}

/// Names of the selectable backends, in registry order.
pub fn backend_names() -> Vec<&'static str> {
    REGISTRY.iter().filter(|e| e.listed).map(|e| e.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_builds_the_backend_it_names() {
        for e in REGISTRY {
            assert_eq!((e.make)().name(), e.name);
        }
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = backend_by_name("lxc").err().unwrap();
        assert_eq!(err.name, "lxc");
        assert!(err.to_string().contains("runc"), "{err}");
        assert!(!backend_names().contains(&"mock"));
        assert!(backend_by_name("mock").is_ok());
    }
}
