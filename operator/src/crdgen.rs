//! Prints the RocketCluster CRD as YAML; `crds/` and the Helm chart hold its output.

use kube::CustomResourceExt;

fn main() -> anyhow::Result<()> {
    print!(
        "{}",
        serde_norway::to_string(&operator::RocketCluster::crd())?
    );
    Ok(())
}
