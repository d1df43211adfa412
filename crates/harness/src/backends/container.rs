//! The built-in container runtime as a [`crate::Backend`].
