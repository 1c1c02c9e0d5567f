//! `crds/` and the Helm chart's copy must be exactly what `crdgen` writes from the Rust types,
//! and the example must be a valid RocketCluster: a stale CRD fails here, not in a cluster.

use operator::RocketCluster;

fn repo_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("reading {path}: {error}"))
}

#[test]
fn crds_are_generated_from_the_types_and_the_chart_has_the_same() {
    let fix = "regenerate with: cargo run -p operator --bin crdgen -- crds charts/rocketry/crds";
    let generated = operator::crd_files().unwrap();
    assert_eq!(generated.len(), 5);
    for (file, yaml) in generated {
        for folder in ["crds", "charts/rocketry/crds"] {
            assert!(
                repo_file(&format!("{folder}/{file}")) == yaml,
                "{folder}/{file} is stale; {fix}"
            );
        }
    }
}

#[test]
fn the_example_is_a_valid_cluster() {
    let example: RocketCluster =
        serde_norway::from_str(&repo_file("examples/rocketcluster.yaml")).unwrap();
    example.spec.validate().unwrap();
    assert_eq!(example.spec.replicas_per_group, 1);
}
