//! The built-in container runtime: namespaces, cgroups v1/v2, overlayfs rootfs, pivot_root.
