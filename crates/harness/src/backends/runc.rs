//! runc over the same image, as a [`crate::Backend`]: the peer users know.
