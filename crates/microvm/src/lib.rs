//! A minimal KVM microVM on the rust-vmm crates.
