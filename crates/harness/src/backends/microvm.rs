//! The cvbench microVM as a [`crate::Backend`].
