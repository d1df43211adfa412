//! `http`: a static-file server for the image's `/srv/www`, optionally load-testing itself.

mod selftest;
mod server;
mod www;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::{bail, Context};
use workload::WorkloadResult;

use crate::args::HttpArgs;
use crate::output;
use crate::signals::TerminationSignals;

pub fn run(args: &HttpArgs, signals: TerminationSignals) -> anyhow::Result<()> {
    let root = www::WwwRoot::open(&args.root)
        .with_context(|| format!("opening document root {}", args.root.display()))?;
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, args.port))
        .with_context(|| format!("binding 0.0.0.0:{}", args.port))?;
    let port = listener
        .local_addr()
        .context("reading the listening address")?
        .port();
    // Bound before READY too, so the harness's trigger connection queues in its backlog.
    let trigger = args
        .selftest_trigger
        .map(|p| {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, p))
                .with_context(|| format!("binding the self-test trigger 0.0.0.0:{p}"))
        })
        .transpose()?;
    let root = Arc::new(root);
    let server_root = Arc::clone(&root);
    std::thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || server::serve(listener, server_root))
        .context("starting the accept thread")?;
    if args.port == 0 {
        eprintln!("cvbench-workload: http listening on 0.0.0.0:{port}");
    }
    // Bound and listening: connections queue in the backlog from here on.
    output::ready("http").context("writing READY")?;

    let Some(plan) = args.selftest else {
        signals.wait().context("waiting for SIGTERM/SIGINT")?;
        return Ok(());
    };
    signals
        .exit_on_signal_in_background("http")
        .context("starting the signal thread")?;
    let files = www::list_files(root.path())
        .with_context(|| format!("listing files in {}", root.path().display()))?;
    if files.is_empty() {
        bail!("no files to request in {}", root.path().display());
    }
    if let Some(trigger) = trigger {
        // The harness's load from outside runs meanwhile; the self-test starts after it.
        let (conn, _) = trigger.accept().context("waiting for the self-test trigger")?;
        drop((conn, trigger));
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let report = selftest::run(addr, &files, plan.requests, plan.connections);
    output::result(&selftest_result(
        &report,
        plan.requests,
        plan.connections,
        files.len(),
    ))
    .context("writing RESULT")?;
    if report.errors > 0 {
        bail!("{} of {} self-test requests failed", report.errors, plan.requests);
    }
    Ok(())
}

fn selftest_result(
    report: &selftest::SelftestReport,
    requests: u32,
    connections: u32,
    files: usize,
) -> WorkloadResult {
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let (p50, p99) = report.latencies.p50_p99_us().unwrap_or((f64::NAN, f64::NAN));
    let metrics = BTreeMap::from([
        ("requests_per_s".to_string(), report.ok as f64 / secs),
        ("latency_p50_us".to_string(), p50),
        ("latency_p99_us".to_string(), p99),
        ("bytes_per_s".to_string(), report.body_bytes as f64 / secs),
        ("errors".to_string(), report.errors as f64),
        ("requests".to_string(), f64::from(requests)),
        ("connections".to_string(), f64::from(connections)),
        ("duration_s".to_string(), secs),
    ]);
    let notes = BTreeMap::from([
        (
            "server".to_string(),
            "HTTP/1.1, thread per connection, keep-alive, sendfile".to_string(),
        ),
        (
            "client".to_string(),
            "in-process over 127.0.0.1, one request in flight per connection".to_string(),
        ),
        ("files".to_string(), files.to_string()),
    ]);
    WorkloadResult {
        workload: "http".into(),
        metrics,
        notes,
    }
}
