//! The CustomResourceDefinitions as served, with the few touches the derive cannot make.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

use super::ConfluenceConnector;

/// Every CRD this operator serves, ready to apply.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![connector_crd()]
}

/// All CRDs as one YAML stream (what `confluence-operator crd` prints and
/// `crds/confluenceconnectors.yaml` holds).
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

fn connector_crd() -> CustomResourceDefinition {
    let mut crd = ConfluenceConnector::crd();
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
        let committed = include_str!("../../crds/confluenceconnectors.yaml");
        let generated = crds_yaml().expect("CRDs render as YAML");
        assert!(
            committed == generated,
            "crds/confluenceconnectors.yaml is stale: run `make crds` and commit the result"
        );
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
