//! deploy/k8s without a cluster: the manifests parse into the Kubernetes API types with nothing
//! lost (a field the types do not know is dropped by serde, so the re-serialised value is compared
//! with the YAML as written), they say what the fleet run depends on (privileged, NFD affinity
//! ORed, /dev/kvm as a CharDevice, the restart policy, `--record-failures`), and the rendered set
//! matches the golden file (`UPDATE_GOLDEN=1` rewrites it after a deliberate change).

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::Namespace;

    fn k8s_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s")
    }

    fn yaml(path: &Path) -> serde_yaml::Value {
        let text = std::fs::read_to_string(path).unwrap();
        serde_yaml::from_str(&text).unwrap()
    }

    fn as_json(v: &serde_yaml::Value) -> serde_json::Value {
        serde_json::to_value(v).unwrap()
    }

    /// Parses `path` as `T` and checks that re-serialising gives back exactly what the file says.
    fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(path: &Path) -> T {
        let original = yaml(path);
        let parsed: T = serde_yaml::from_value(original.clone()).unwrap();
        let again = serde_json::to_value(&parsed).unwrap();
        assert_eq!(
            again,
            as_json(&original),
            "{}: fields the Kubernetes types do not know (misspelt or misplaced) were dropped",
            path.display()
        );
        parsed
    }

    #[test]
    fn namespace_is_privileged_for_pod_security() {
        let ns: Namespace = typed(&k8s_dir().join("namespace.yaml"));
        let labels = ns.metadata.labels.unwrap();
        for mode in ["enforce", "audit", "warn"] {
            assert_eq!(
                labels[&format!("pod-security.kubernetes.io/{mode}")],
                "privileged"
            );
        }
    }

    #[test]
    fn daemonset_runs_bench_privileged_on_kvm_nodes_only() {
        let ds: DaemonSet = typed(&k8s_dir().join("daemonset.yaml"));
        let pod = ds.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Always"));

        // Node affinity: two nodeSelectorTerms (ORed), VMX in one, SVM in the other.
        let terms = pod
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        let keys: Vec<String> = terms
            .iter()
            .map(|t| {
                let exprs = t.match_expressions.as_ref().unwrap();
                assert_eq!(exprs.len(), 1, "one expression per term, so the terms OR");
                exprs[0].key.clone()
            })
            .collect();
        assert_eq!(
            keys,
            [
                "feature.node.kubernetes.io/cpu-cpuid.VMX",
                "feature.node.kubernetes.io/cpu-cpuid.SVM"
            ]
        );

        // /dev/kvm must be a character device, or the pod is refused.
        let volumes = pod.volumes.unwrap();
        let kvm = volumes.iter().find_map(|v| v.host_path.as_ref()).unwrap();
        assert_eq!(kvm.path, "/dev/kvm");
        assert_eq!(kvm.type_.as_deref(), Some("CharDevice"));

        // The init container: bench, privileged, the node name as a label, failures recorded not retried.
        let init = &pod.init_containers.unwrap()[0];
        assert_eq!(init.command.as_deref(), Some(&["bench".to_string()][..]));
        assert_eq!(init.security_context.as_ref().unwrap().privileged, Some(true));
        let args = init.args.as_ref().unwrap();
        assert!(
            args.contains(&"--label=node=$(NODE_NAME)".to_string()),
            "{args:?}"
        );
        assert!(args.contains(&"--record-failures".to_string()), "{args:?}");
        assert!(args.contains(&"--out=/results".to_string()), "{args:?}");
        let env = init.env.as_ref().unwrap();
        let node = env.iter().find(|e| e.name == "NODE_NAME").unwrap();
        assert_eq!(
            node.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "spec.nodeName"
        );
        assert!(init
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == "/dev/kvm"));

        // The holder keeps the pod (and results.json) around to be read.
        let holder = &pod.containers[0];
        assert_eq!(holder.name, "holder");
        assert!(holder
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == "/results"));
    }

    #[test]
    fn an_unknown_field_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(k8s_dir().join("daemonset.yaml"))
            .unwrap()
            .replace(
                "privileged: true",
                "privileged: true\n            privilegd: true",
            );
        let path = dir.path().join("ds.yaml");
        std::fs::write(&path, text).unwrap();
        let caught = std::panic::catch_unwind(|| typed::<DaemonSet>(&path));
        assert!(caught.is_err(), "a misspelt field must fail the round trip");
    }

    /// What `kubectl kustomize deploy/k8s` renders for this kustomization: its resources in order, the
    /// namespace set on namespaced objects, the image tag applied, keys sorted.
    fn render() -> String {
        let dir = k8s_dir();
        let kustomization = yaml(&dir.join("kustomization.yaml"));
        let namespace = kustomization["namespace"].as_str().unwrap().to_string();
        let tag = kustomization["images"][0]["newTag"].as_str().unwrap().to_string();
        let mut docs = Vec::new();
        for resource in kustomization["resources"].as_sequence().unwrap() {
            let mut doc = as_json(&yaml(&dir.join(resource.as_str().unwrap())));
            if doc["kind"] != "Namespace" {
                doc["metadata"]["namespace"] = serde_json::json!(namespace);
            }
            for list in ["initContainers", "containers"] {
                let pointer = format!("/spec/template/spec/{list}");
                if let Some(containers) = doc.pointer_mut(&pointer).and_then(|c| c.as_array_mut()) {
                    for c in containers {
                        let image = c["image"]
                            .as_str()
                            .unwrap()
                            .split(':')
                            .next()
                            .unwrap()
                            .to_string();
                        c["image"] = serde_json::json!(format!("{image}:{tag}"));
                    }
                }
            }
            docs.push(serde_yaml::to_string(&doc).unwrap());
        }
        docs.join("---\n")
    }

    #[test]
    fn rendered_manifests_match_the_golden_file() {
        let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/k8s-rendered.yaml");
        let rendered = render();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &rendered).unwrap();
        }
        let expected = std::fs::read_to_string(&golden).unwrap();
        assert_eq!(
            rendered, expected,
            "deploy/k8s changed; review and run with UPDATE_GOLDEN=1 to accept"
        );
    }
}
