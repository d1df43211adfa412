//! Results files that `bench` writes validate against the published JSON Schema
//! (`results/schema/results.schema.json`, generated from the Rust types): `bench run` and
//! `bench compare --density` with the hidden mock backend.

#[cfg(test)]
mod tests {
    use std::path::Path;

    use assert_cmd::Command;

    fn validate(path: &Path) {
        let schema_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(results::schema::SCHEMA_FILE);
        let schema: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&schema_path).expect("published schema")).expect("json");
        assert_eq!(
            schema,
            results::schema::json_schema(),
            "the published schema is the generated one"
        );
        let validator = jsonschema::validator_for(&schema).expect("valid schema");
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("results file")).expect("json");
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }

    fn bench(mock: &str) -> Command {
        let mut c = Command::cargo_bin("bench").expect("bench binary");
        c.env("CVBENCH_MOCK", mock);
        c
    }

    #[test]
    fn run_and_compare_results_files_validate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("run.json");
        bench("fail=1")
            .args([
                "run",
                "--backend",
                "mock",
                "--workload",
                "oltp",
                "--runs",
                "3",
                "--json",
            ])
            .arg(&run)
            .arg("--image")
            .arg(img.path())
            .assert()
            // A failed run makes `bench run` exit 1; the file records it.
            .code(1);
        validate(&run);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&run).expect("run")).expect("json");
        assert_eq!(v["benchmarks"][0]["failures"].as_array().map(Vec::len), Some(1));
        let out = dir.path().join("cmp");
        bench("")
            .args([
                "compare",
                "--backends",
                "mock",
                "--workloads",
                "idle,http",
                "--runs",
                "2",
                "--density",
                "2",
                "--no-report",
            ])
            .arg("--out")
            .arg(&out)
            .arg("--image")
            .arg(img.path())
            .assert()
            .success();
        validate(&out.join("results.json"));
    }
}
