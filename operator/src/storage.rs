//! Growing broker volumes. A StatefulSet's volume claim template cannot change, so a larger
//! `storage.size` is applied to each claim the group already has, as `kubectl edit pvc` would,
//! where the claim's StorageClass allows expansion; the storage system does the rest.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;

use crate::{Error, Result};

/// Bytes in a Kubernetes quantity of the form the CRD allows (`10Gi`, `1.5T`, `500M`).
/// Hand-written because k8s-openapi keeps quantities as strings and the few forms the schema
/// lets through need no general parser.
pub fn bytes(quantity: &str) -> Option<f64> {
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let scale = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

fn requested(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|quantity| quantity.0.as_str())
}

/// Asks for `size` on every bound claim matching `selector` that is smaller. Returns why some
/// could not grow (their class does not allow expansion), or `None` when all could.
pub async fn grow_claims(
    claims: &Api<PersistentVolumeClaim>,
    classes: &Api<StorageClass>,
    selector: &str,
    size: &str,
) -> Result<Option<String>> {
    let wanted = bytes(size).unwrap_or(0.0);
    let list = claims
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|source| Error::Kube {
            action: "list",
            kind: "persistentvolumeclaim",
            name: selector.to_string(),
            source,
        })?;
    let mut refused = Vec::new();
    for claim in list.items {
        let bound = claim
            .status
            .as_ref()
            .and_then(|status| status.phase.as_deref())
            == Some("Bound");
        let smaller = requested(&claim)
            .and_then(bytes)
            .is_some_and(|have| have < wanted);
        // An unbound claim cannot change; it is grown once its pod has placed it.
        if !bound || !smaller {
            continue;
        }
        let name = claim.name_any();
        let class = claim
            .spec
            .as_ref()
            .and_then(|spec| spec.storage_class_name.clone())
            .unwrap_or_default();
        let expandable = match classes.get_opt(&class).await {
            Ok(found) => found.and_then(|c| c.allow_volume_expansion) == Some(true),
            Err(source) => {
                return Err(Error::Kube {
                    action: "get",
                    kind: "storageclass",
                    name: class,
                    source,
                })
            }
        };
        if !expandable {
            refused.push(format!("{name} (class {class:?})"));
            continue;
        }
        let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": size}}}});
        claims
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| Error::Kube {
                action: "grow",
                kind: "persistentvolumeclaim",
                name: name.clone(),
                source,
            })?;
        tracing::info!(claim = %name, size, "asked for a larger volume");
    }
    Ok((!refused.is_empty()).then(|| {
        format!(
            "storage.size {size} cannot be applied: the StorageClass of {} does not allow volume expansion; those claims keep their size",
            refused.join(", ")
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_across_suffixes() {
        assert_eq!(bytes("1Gi"), Some(1073741824.0));
        assert_eq!(bytes("512"), Some(512.0));
        assert!(bytes("2G").unwrap() < bytes("2Gi").unwrap());
        assert!(bytes("1.5Ti").unwrap() > bytes("1500Gi").unwrap());
        assert_eq!(bytes("10Xi"), None);
    }
}
