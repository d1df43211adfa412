//! `--confinement` on the command line: an unknown level is a usage error naming it and the levels.

#[cfg(test)]
mod tests {
    use assert_cmd::Command;

    #[test]
    fn an_unknown_confinement_level_is_a_usage_error() {
        for cmd in ["run", "density"] {
            let out = Command::cargo_bin("bench")
                .unwrap()
                .args([
                    cmd,
                    "--backend",
                    "mock",
                    "--workload",
                    "idle",
                    "--confinement",
                    "strict",
                ])
                .assert()
                .code(2)
                .get_output()
                .clone();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("\"strict\"") && stderr.contains("oci-default"),
                "{stderr}"
            );
        }
    }

    #[test]
    fn help_names_the_levels_and_the_default() {
        let out = Command::cargo_bin("bench")
            .unwrap()
            .args(["compare", "--help"])
            .assert()
            .success()
            .get_output()
            .clone();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("--confinement") && help.contains("[default: oci-default]"),
            "{help}"
        );
    }
}
