//! Builds the shared image: a content-addressed rootfs directory holding the static workload binary
//! and the static files it serves, and (for the microVM) the same tree as an ext4 disk image.
//! Also finds the cvbench binaries (workload, guest init) that the image is made from.
//!
//! (Skeleton: the API below is the contract; see the issue for the implementation.)
