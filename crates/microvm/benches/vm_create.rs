//! VM creation cost: open KVM, create the VM, guest memory, irqchip, devices, one vCPU, and load the
//! probe payload with its boot structures (everything `Vm::create` does before the first vCPU entry).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use microvm::events::NullObserver;
use microvm::{DiskConfig, Vm, VmConfig};

fn vm_create(c: &mut Criterion) {
    if let Err(err) = microvm::builder::open_kvm() {
        println!("skipped: {err}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = microvm::probe::write_payload(dir.path()).expect("probe payload");
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, microvm::probe::disk_image("bench", 8)).expect("disk image");
    c.bench_function("vm_create_probe_16mib_1vcpu", |b| {
        // Teardown of the previous VM (closing the KVM fds) is kept out of the measurement.
        b.iter_batched(
            || VmConfig {
                kernel: kernel.clone(),
                cmdline_extra: String::new(),
                memory_mib: 16,
                vcpus: 1,
                disks: vec![DiskConfig {
                    path: disk.clone(),
                    read_only: false,
                }],
                net: None,
                console: Box::new(std::io::sink()),
            },
            |config| Vm::create(config, Arc::new(NullObserver)).expect("VM creation"),
            BatchSize::PerIteration,
        )
    });
}

criterion_group!(benches, vm_create);
criterion_main!(benches);
