//! Writes the operator's CRDs as YAML, one `<plural>.<group>.yaml` each, into every folder
//! named on the command line: `crds/` and the Helm chart's `crds/` hold its output.

fn main() -> anyhow::Result<()> {
    let folders: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        !folders.is_empty(),
        "usage: crdgen FOLDER... (e.g. crdgen crds charts/rocketry/crds)"
    );
    for (file, yaml) in operator::crd_files()? {
        for folder in &folders {
            std::fs::write(std::path::Path::new(folder).join(&file), &yaml)?;
        }
    }
    Ok(())
}
