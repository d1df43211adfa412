//! Init's argument vector, turned into the workload's.
//!
//! The VMM puts the workload arguments after ` -- ` on the kernel command line, and the kernel hands
//! everything after `--` to init as `argv[1..]`. The kernel also hands init any bare word before
//! `--` that it did not recognise as a parameter (a debugging flag such as `nokaslr` on a kernel built
//! without KASLR), and those come first. So the workload's arguments start at the first word that
//! names a workload; anything before it is reported and dropped rather than passed on, where it would
//! make the workload fail with a confusing usage error.

use std::ffi::{OsStr, OsString};

use workload::spec::SUBCOMMANDS;

/// The arguments init will run the workload with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadArgv {
    /// `argv[1..]` of the workload, starting with the workload name.
    pub args: Vec<OsString>,
    /// Words the kernel passed before the workload's arguments, dropped.
    pub ignored: Vec<OsString>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("no workload on the kernel command line (expected `-- <idle|http|oltp|service> ...`), init got {got:?}")]
    NoWorkload { got: Vec<String> },
}

/// The workload binary's subcommands, not the workload names: the service workloads' arguments
/// start with `service` (`service nginx`), which is not itself a workload name.
fn names_a_workload(word: &OsStr) -> bool {
    word.to_str().is_some_and(|w| SUBCOMMANDS.contains(&w))
}

/// Splits init's full `argv` (program name included) into the workload's arguments.
pub fn workload_argv<I>(argv: I) -> Result<WorkloadArgv, ArgsError>
where
    I: IntoIterator<Item = OsString>,
{
    let words: Vec<OsString> = argv.into_iter().skip(1).collect();
    match words.iter().position(|w| names_a_workload(w)) {
        Some(start) => {
            let mut ignored = words;
            let args = ignored.split_off(start);
            Ok(WorkloadArgv { args, ignored })
        }
        None => Err(ArgsError::NoWorkload {
            got: words.iter().map(|w| w.to_string_lossy().into_owned()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workload::{WorkloadKind, WorkloadSpec};

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn passes_the_spec_arguments_through_unchanged() {
        for kind in WorkloadKind::ALL {
            let spec_args = WorkloadSpec::default_for(kind).to_args();
            let mut argv = vec![OsString::from("/cvbench/init")];
            argv.extend(spec_args.iter().map(OsString::from));
            let parsed = workload_argv(argv).unwrap();
            assert_eq!(
                parsed.args,
                spec_args.iter().map(OsString::from).collect::<Vec<_>>()
            );
            assert!(parsed.ignored.is_empty());
        }
    }

    #[test]
    fn service_workloads_start_at_the_service_word() {
        for kind in [WorkloadKind::Nginx, WorkloadKind::Mariadb] {
            let spec_args = WorkloadSpec::default_for(kind)
                .with_first_start_init(kind == WorkloadKind::Mariadb)
                .to_args();
            let mut argv = os(&["/cvbench/init", "nokaslr"]);
            argv.extend(spec_args.iter().map(OsString::from));
            let parsed = workload_argv(argv).unwrap();
            assert_eq!(
                parsed.args,
                spec_args.iter().map(OsString::from).collect::<Vec<_>>()
            );
            assert_eq!(parsed.args[0], "service");
            assert_eq!(parsed.ignored, os(&["nokaslr"]));
        }
    }

    #[test]
    fn drops_unrecognised_kernel_words_before_the_workload() {
        let parsed = workload_argv(os(&[
            "/cvbench/init",
            "nokaslr",
            "debug2",
            "oltp",
            "--rows",
            "10",
        ]))
        .unwrap();
        assert_eq!(parsed.args, os(&["oltp", "--rows", "10"]));
        assert_eq!(parsed.ignored, os(&["nokaslr", "debug2"]));
    }

    #[test]
    fn a_workload_name_later_in_the_arguments_is_kept_as_an_argument() {
        let parsed = workload_argv(os(&["init", "http", "--root", "idle"])).unwrap();
        assert_eq!(parsed.args, os(&["http", "--root", "idle"]));
    }

    #[test]
    fn missing_workload_is_an_error_listing_what_init_got() {
        let err = workload_argv(os(&["/cvbench/init", "nokaslr"])).unwrap_err();
        assert_eq!(
            err,
            ArgsError::NoWorkload {
                got: vec!["nokaslr".into()]
            }
        );
        assert!(err.to_string().contains("nokaslr"), "{err}");
        assert!(workload_argv(os(&["/cvbench/init"])).is_err());
        assert!(workload_argv(Vec::new()).is_err());
    }
}
