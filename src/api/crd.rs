//! The CustomResourceDefinitions as served, with the few touches the derive cannot make.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

use super::{ConfluenceAccessGrant, ConfluenceConnector};

/// Every CRD this operator serves, ready to apply.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![connector_crd(), grant_crd()]
}

/// All CRDs as one YAML stream (what `confluence-operator crd` prints).
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for (_, yaml) in crd_files()? {
        out.push_str(&yaml);
    }
    Ok(out)
}

/// One YAML document per CRD with its file name, `<plural>.yaml` (what `crds/` holds).
pub fn crd_files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    all_crds()
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.spec.names.plural);
            Ok((name, format!("---\n{}", serde_yaml::to_string(&crd)?)))
        })
        .collect()
}

fn connector_crd() -> CustomResourceDefinition {
    with_unobserved_status(ConfluenceConnector::crd())
}

fn grant_crd() -> CustomResourceDefinition {
    with_unobserved_status(ConfluenceAccessGrant::crd())
}

fn with_unobserved_status(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|root| root.properties.as_mut())
            .and_then(|props| props.get_mut("status"));
        if let Some(status) = status {
            default_observed_generation(status);
        }
    }
    crd
}

/// A new object then reads as "not yet observed" (kstatus InProgress) instead of Current,
/// the way Flux's CRDs do it.
fn default_observed_generation(status: &mut JSONSchemaProps) {
    status.default = Some(
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
            serde_json::json!({ "observedGeneration": -1 }),
        ),
    );
    if let Some(generation) = status
        .properties
        .as_mut()
        .and_then(|props| props.get_mut("observedGeneration"))
    {
        generation.default = Some(
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                serde_json::json!(-1),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crds_match_the_generated_ones() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        let files = crd_files().expect("CRDs render as YAML");
        for (name, generated) in &files {
            let committed = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            assert!(
                committed == *generated,
                "crds/{name} is stale or missing: run `make crds` and commit the result"
            );
        }
        let mut committed: Vec<String> = std::fs::read_dir(&dir)
            .expect("crds/ exists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        committed.sort();
        let mut expected: Vec<String> = files.into_iter().map(|(name, _)| name).collect();
        expected.sort();
        assert_eq!(committed, expected, "crds/ holds exactly one file per CRD");
    }

    #[test]
    fn grant_discovery_names_and_columns() {
        let crd = grant_crd();
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["cfag".to_string()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["confluence".to_string()][..])
        );
        let columns: Vec<_> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|c| c.priority.unwrap_or(0) == 0)
            .map(|c| c.name.to_uppercase())
            .collect();
        assert_eq!(columns, ["USER", "GROUP", "PHASE", "EXPIRES", "AGE"]);
    }

    /// The API server rejects non-structural schemas (every node typed, no bare
    /// `anyOf`/`oneOf` alternatives carrying their own types).
    #[test]
    fn schema_is_structural() {
        fn check(path: &str, schema: &JSONSchemaProps) {
            let typed = schema.type_.is_some()
                || schema.x_kubernetes_int_or_string == Some(true)
                || schema.x_kubernetes_preserve_unknown_fields == Some(true);
            assert!(typed, "{path} has no type");
            for alternatives in [&schema.any_of, &schema.one_of].into_iter().flatten() {
                for alt in alternatives {
                    assert!(
                        alt.type_.is_none(),
                        "{path}: anyOf/oneOf branches must not set types"
                    );
                }
            }
            for (name, child) in schema.properties.iter().flatten() {
                check(&format!("{path}.{name}"), child);
            }
            if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) =
                &schema.items
            {
                check(&format!("{path}[]"), items);
            }
        }
        for crd in all_crds() {
            for version in &crd.spec.versions {
                let root = version
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .expect("every version has a schema");
                check(&crd.spec.names.kind, root);
            }
        }
    }

    #[test]
    fn discovery_names_and_columns() {
        let crd = connector_crd();
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["cfc".to_string()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["confluence".to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.to_uppercase(), c.priority.unwrap_or(0)))
            .collect();
        let expected = [
            "SITE",
            "STATUS",
            "READY",
            "USERS",
            "GROUPS",
            "LAST SYNC",
            "AGE",
        ];
        for (i, name) in expected.iter().enumerate() {
            assert_eq!(columns[i], (name.to_string(), 0));
        }
        assert_eq!(columns[7], ("MESSAGE".to_string(), 1));
    }
}
