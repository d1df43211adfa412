//! `oltp`: sysbench's `oltp_read_write` against SQLite (bundled through rusqlite).
//!
//! Schema and statements follow sysbench's `oltp_common.lua`: table `sbtest1(id, k, c, pad)` with a
//! secondary index on `k` (created after the load, as sysbench does), and per transaction 10 point
//! selects, one simple range, one sum range, one ordered range, one distinct range (100 rows each),
//! one index update, one non-index update, and a delete followed by an insert of the same id.
//! Commits are durable: WAL journal with `synchronous=FULL`, so every COMMIT fsyncs the WAL.
//! Random choices come from a seeded xorshift generator, so every run does the same work.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use rusqlite::{params, Connection};
use workload::WorkloadResult;

use crate::args::OltpArgs;
use crate::latency::LatencySamples;
use crate::output;
use crate::signals::TerminationSignals;

/// File name of the database inside `--dir`.
pub const DB_FILE: &str = "sbtest.db";
/// Rows per range query, sysbench's default `--range_size`.
const RANGE_SIZE: u32 = 100;
/// Point selects per transaction, sysbench's default `--point_selects`.
const POINT_SELECTS: u32 = 10;
const SEED: u64 = 0x5eed_cbe7_0000_0001;

/// xorshift64*: small, fast, deterministic; plenty for choosing row ids.
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    pub fn new(seed: u64) -> Self {
        XorShift64(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi` (`lo <= hi`).
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        let span = u64::from(hi - lo) + 1;
        // The remainder is below span <= 2^32, so it fits: lossless.
        #[allow(clippy::cast_possible_truncation)]
        let offset = (self.next_u64() % span) as u32;
        lo + offset
    }

    /// sysbench's `c`/`pad` value: groups of 11 random digits joined by `-`.
    pub fn digit_groups(&mut self, groups: usize) -> String {
        let mut s = String::with_capacity(groups * 12);
        for g in 0..groups {
            if g > 0 {
                s.push('-');
            }
            for _ in 0..11 {
                let digit = (self.next_u64() % 10) as u8;
                s.push(char::from(b'0' + digit));
            }
        }
        s
    }

    fn c_value(&mut self) -> String {
        self.digit_groups(10) // 119 characters, fits CHAR(120)
    }

    fn pad_value(&mut self) -> String {
        self.digit_groups(5) // 59 characters, fits CHAR(60)
    }
}

pub fn run(args: &OltpArgs, signals: TerminationSignals) -> anyhow::Result<()> {
    signals
        .exit_on_signal_in_background("oltp")
        .context("starting the signal thread")?;
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let db_path = args.dir.join(DB_FILE);
    remove_previous(&db_path)?;
    let mut rng = XorShift64::new(SEED);

    let load_started = Instant::now();
    let mut conn = Connection::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?;
    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .context("setting journal_mode=WAL")?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        bail!(
            "SQLite refused journal_mode=WAL on {} (got {journal_mode})",
            db_path.display()
        );
    }
    conn.execute_batch("PRAGMA synchronous=FULL;")
        .context("setting synchronous=FULL")?;
    let synchronous: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .context("reading synchronous")?;
    load_table(&mut conn, args.rows, &mut rng).context("loading sbtest1")?;
    let load_secs = load_started.elapsed().as_secs_f64();
    output::ready("oltp").context("writing READY")?;

    let mut latencies = LatencySamples::with_capacity(args.transactions as usize);
    let run_started = Instant::now();
    for _ in 0..args.transactions {
        let started = Instant::now();
        transaction(&mut conn, args.rows, &mut rng).context("running an oltp_read_write transaction")?;
        latencies.record(started.elapsed());
    }
    let run_secs = run_started.elapsed().as_secs_f64().max(1e-9);
    let (p50, p99) = latencies.p50_p99_us().unwrap_or((f64::NAN, f64::NAN));
    let sqlite_version = rusqlite::version().to_string();
    drop(conn);

    let metrics = BTreeMap::from([
        ("tps".to_string(), f64::from(args.transactions) / run_secs),
        ("latency_p50_us".to_string(), p50),
        ("latency_p99_us".to_string(), p99),
        ("rows".to_string(), f64::from(args.rows)),
        ("transactions".to_string(), f64::from(args.transactions)),
        ("load_s".to_string(), load_secs),
        ("duration_s".to_string(), run_secs),
    ]);
    let notes = BTreeMap::from([
        ("journal_mode".to_string(), journal_mode.to_lowercase()),
        (
            "synchronous".to_string(),
            synchronous_name(synchronous).to_string(),
        ),
        ("sqlite_version".to_string(), sqlite_version),
        (
            "mix".to_string(),
            "sysbench oltp_read_write, range_size 100, point_selects 10".to_string(),
        ),
    ]);
    output::result(&WorkloadResult {
        workload: "oltp".into(),
        metrics,
        notes,
    })
    .context("writing RESULT")?;
    Ok(())
}

fn synchronous_name(level: i64) -> &'static str {
    match level {
        0 => "off",
        1 => "normal",
        2 => "full",
        3 => "extra",
        _ => "unknown",
    }
}

/// A database left by an earlier run in the same directory would change the work done.
fn remove_previous(db_path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db_path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", Path::new(&p).display())),
        }
    }
    Ok(())
}

fn load_table(conn: &mut Connection, rows: u32, rng: &mut XorShift64) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE sbtest1 (id INTEGER PRIMARY KEY, k INTEGER NOT NULL DEFAULT 0, \
         c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '');",
    )?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare("INSERT INTO sbtest1 (id, k, c, pad) VALUES (?1, ?2, ?3, ?4)")?;
        for id in 1..=rows {
            insert.execute(params![id, rng.range(1, rows), rng.c_value(), rng.pad_value()])?;
        }
    }
    tx.execute_batch("CREATE INDEX k_1 ON sbtest1(k);")?;
    tx.commit()
}

/// One oltp_read_write transaction. Every query's rows are read to the end.
fn transaction(conn: &mut Connection, rows: u32, rng: &mut XorShift64) -> rusqlite::Result<()> {
    let range = RANGE_SIZE.min(rows);
    let tx = conn.transaction()?;
    {
        let mut point = tx.prepare_cached("SELECT c FROM sbtest1 WHERE id=?1")?;
        for _ in 0..POINT_SELECTS {
            let found = point
                .query_map([rng.range(1, rows)], |r| r.get::<_, String>(0))?
                .count();
            // Every id in 1..=rows exists (delete and re-insert happen in one transaction).
            if found != 1 {
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
        }
        let queries = [
            "SELECT c FROM sbtest1 WHERE id BETWEEN ?1 AND ?2",
            "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN ?1 AND ?2",
            "SELECT c FROM sbtest1 WHERE id BETWEEN ?1 AND ?2 ORDER BY c",
            "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN ?1 AND ?2 ORDER BY c",
        ];
        for sql in queries {
            let lo = rng.range(1, rows - range + 1);
            let mut stmt = tx.prepare_cached(sql)?;
            let mut result = stmt.query(params![lo, lo + range - 1])?;
            while result.next()?.is_some() {}
        }
        tx.prepare_cached("UPDATE sbtest1 SET k=k+1 WHERE id=?1")?
            .execute([rng.range(1, rows)])?;
        tx.prepare_cached("UPDATE sbtest1 SET c=?1 WHERE id=?2")?
            .execute(params![rng.c_value(), rng.range(1, rows)])?;
        let id = rng.range(1, rows);
        tx.prepare_cached("DELETE FROM sbtest1 WHERE id=?1")?
            .execute([id])?;
        tx.prepare_cached("INSERT INTO sbtest1 (id, k, c, pad) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![id, rng.range(1, rows), rng.c_value(), rng.pad_value()])?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prng_is_deterministic_and_in_range() {
        let mut a = XorShift64::new(42);
        let mut b = XorShift64::new(42);
        let xs: Vec<u32> = (0..1000).map(|_| a.range(3, 7)).collect();
        let ys: Vec<u32> = (0..1000).map(|_| b.range(3, 7)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| (3..=7).contains(&x)));
        for v in 3..=7 {
            assert!(xs.contains(&v), "{v} never drawn");
        }
        assert_eq!(XorShift64::new(1).range(5, 5), 5);
    }

    #[test]
    fn c_and_pad_have_sysbench_shape() {
        let mut r = XorShift64::new(7);
        let c = r.c_value();
        assert_eq!(c.len(), 119);
        assert_eq!(c.split('-').count(), 10);
        assert!(c
            .split('-')
            .all(|g| g.len() == 11 && g.bytes().all(|b| b.is_ascii_digit())));
        assert_eq!(r.pad_value().len(), 59);
    }

    #[test]
    fn table_keeps_its_size_across_transactions() {
        let tmp = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(tmp.path().join("t.db")).unwrap();
        let mut rng = XorShift64::new(SEED);
        load_table(&mut conn, 50, &mut rng).unwrap();
        for _ in 0..20 {
            transaction(&mut conn, 50, &mut rng).unwrap();
        }
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM sbtest1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 50);
        let idx: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type='index' AND name='k_1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(idx, 1);
    }
}
