//! Parsers for flag values: sizes (`256M`, `1.5GiB`), durations (`10s`, `500ms`) and CPU counts.
//! Each returns a message naming the bad value, which clap turns into a one-line usage error.

use std::time::Duration;

/// Sizes at or above this do not fit a `u64` byte count (2^64).
const MAX_SIZE_BYTES: f64 = 18_446_744_073_709_551_616.0;
/// Durations at or above this (about 31 years) are refused as too large rather than overflowing.
const MAX_DURATION_S: f64 = 1e9;

/// A size in bytes: a number with an optional binary unit — `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`,
/// `G`/`GB`/`GiB`, `T`/`TB`/`TiB` (case-insensitive). Every spelling of a unit means the same power
/// of 1024, as in `docker run -m` (where `1g` and `1gb` are both 1 GiB), so no suffix is accepted
/// with one meaning and another suffix refused.
pub fn size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{text:?} is not a size (use e.g. 256M, 512MiB, 2G)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (use e.g. 256M, 512MiB, 2G)"))?;
    let bytes = value * 2f64.powi(shift);
    if !bytes.is_finite() || bytes >= MAX_SIZE_BYTES {
        return Err(format!("{text:?} is too large (at most 16 EiB)"));
    }
    if bytes < 1.0 {
        return Err(format!("{text:?} is too small (must be at least 1 byte)"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked range above
    Ok(bytes.round() as u64)
}

/// A duration: a number with a unit — `us`, `ms`, `s`, `m`, `h`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "" => return Err(format!("{text:?} needs a unit (e.g. 500ms, 10s, 2m)")),
        _ => return Err(format!("{text:?} is not a duration (use e.g. 500ms, 10s, 2m)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (use e.g. 500ms, 10s, 2m)"))?;
    let secs = value * scale;
    if !secs.is_finite() || secs >= MAX_DURATION_S {
        return Err(format!("{text:?} is too long (at most about 31 years)"));
    }
    if secs <= 0.0 {
        return Err(format!("{text:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A CPU quota in CPUs, e.g. `1.5`.
pub fn cpus(text: &str) -> Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of CPUs (e.g. 1.5)"))?;
    if !(v.is_finite() && v >= 0.01) {
        return Err(format!("{text:?} must be at least 0.01 CPUs"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_binary_units() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("1b"), Ok(1));
        assert_eq!(size("256M"), Ok(256 << 20));
        assert_eq!(size("256MiB"), Ok(256 << 20));
        assert_eq!(size("64k"), Ok(64 << 10));
        assert_eq!(size("2G"), Ok(2 << 30));
        assert_eq!(size("1.5GiB"), Ok(3 << 29));
        assert_eq!(size("1T"), Ok(1 << 40));
    }

    #[test]
    fn every_spelling_of_a_unit_means_the_same_power_of_1024() {
        for (units, bytes) in [
            (["k", "kb", "KiB", "KB"], 1u64 << 10),
            (["m", "mb", "MiB", "MB"], 1 << 20),
            (["g", "gb", "GiB", "GB"], 1 << 30),
            (["t", "tb", "TiB", "TB"], 1 << 40),
        ] {
            for unit in units {
                assert_eq!(size(&format!("1{unit}")), Ok(bytes), "1{unit}");
            }
        }
    }

    #[test]
    fn overflowing_sizes_and_durations_say_too_large_not_too_small() {
        let err = size("99999999999999999999G").unwrap_err();
        assert!(err.contains("too large"), "{err}");
        assert!(size("16384P").is_err());
        assert!(size("0.1").unwrap_err().contains("at least 1 byte"));
        let err = duration("99999999999999999s").unwrap_err();
        assert!(err.contains("too long") && !err.contains("positive"), "{err}");
        assert!(duration("0ms").unwrap_err().contains("positive"));
    }

    #[test]
    fn malformed_sizes_name_the_value() {
        for bad in ["10x", "", "M", "1.2.3G", "-5M", "0", "0.1"] {
            let err = size(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert!(duration("10").unwrap_err().contains("unit"));
        assert!(duration("10 parsecs").is_err());
        assert!(duration("0s").is_err());
    }

    #[test]
    fn cpu_counts() {
        assert_eq!(cpus("1.5"), Ok(1.5));
        assert!(cpus("0").is_err());
        assert!(cpus("many").is_err());
        assert!(cpus("NaN").is_err());
    }
}
