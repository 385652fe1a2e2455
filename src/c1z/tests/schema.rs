//! The stored schema must equal the SDK's, name for name.

use super::support::build;

/// (column, declared type, not null, default).
type Column = (&'static str, &'static str, bool, Option<&'static str>);
/// (index, table, unique, partial condition, columns).
type Index = (
    &'static str,
    &'static str,
    bool,
    Option<&'static str>,
    &'static [&'static str],
);

/// Tables and their columns exactly as in the SDK.
const TABLES: &[(&str, &[Column])] = &[
    (
        "v1_resource_types",
        &[
            ("id", "integer", false, None),
            ("external_id", "text", true, None),
            ("data", "blob", true, None),
            ("sync_id", "text", true, None),
            ("discovered_at", "datetime", true, None),
        ],
    ),
    (
        "v1_resources",
        &[
            ("id", "integer", false, None),
            ("resource_type_id", "text", true, None),
            ("external_id", "text", true, None),
            ("parent_resource_type_id", "text", false, None),
            ("parent_resource_id", "text", false, None),
            ("data", "blob", true, None),
            ("sync_id", "text", true, None),
            ("discovered_at", "datetime", true, None),
        ],
    ),
    (
        "v1_entitlements",
        &[
            ("id", "integer", false, None),
            ("resource_type_id", "text", true, None),
            ("resource_id", "text", true, None),
            ("external_id", "text", true, None),
            ("data", "blob", true, None),
            ("sync_id", "text", true, None),
            ("discovered_at", "datetime", true, None),
        ],
    ),
    (
        "v1_sync_runs",
        &[
            ("id", "integer", false, None),
            ("sync_id", "text", true, None),
            ("started_at", "datetime", true, None),
            ("ended_at", "datetime", false, None),
            ("sync_token", "text", true, None),
            ("sync_type", "text", true, Some("'full'")),
            ("parent_sync_id", "text", true, Some("''")),
            ("linked_sync_id", "text", true, Some("''")),
            ("supports_diff", "integer", true, Some("0")),
            ("grants_backfilled", "integer", true, Some("0")),
            ("stats", "text", false, None),
            ("ingest_invariant_generation", "text", true, Some("''")),
            ("ingest_invariant_coverage", "text", true, Some("''")),
            ("ingest_invariant_mode", "text", true, Some("''")),
        ],
    ),
    (
        "v1_grants",
        &[
            ("id", "integer", false, None),
            ("resource_type_id", "text", true, None),
            ("resource_id", "text", true, None),
            ("entitlement_id", "text", true, None),
            ("principal_resource_type_id", "text", true, None),
            ("principal_resource_id", "text", true, None),
            ("external_id", "text", true, None),
            ("expansion", "blob", false, None),
            ("needs_expansion", "integer", true, Some("0")),
            ("data", "blob", true, None),
            ("sync_id", "text", true, None),
            ("discovered_at", "datetime", true, None),
        ],
    ),
    (
        "v1_assets",
        &[
            ("id", "integer", false, None),
            ("external_id", "text", true, None),
            ("content_type", "text", true, None),
            ("data", "blob", true, None),
            ("sync_id", "text", true, None),
            ("discovered_at", "datetime", true, None),
        ],
    ),
    (
        "v1_connector_sessions",
        &[
            ("id", "integer", false, None),
            ("sync_id", "text", true, None),
            ("key", "text", true, None),
            ("value", "blob", true, None),
        ],
    ),
];

/// Indexes exactly as the SDK names them.
const INDEXES: &[Index] = &[
    (
        "idx_resource_types_external_sync_v1",
        "v1_resource_types",
        true,
        None,
        &["external_id", "sync_id"],
    ),
    (
        "idx_resources_resource_type_id_v1",
        "v1_resources",
        false,
        None,
        &["resource_type_id"],
    ),
    (
        "idx_resources_external_sync_v1",
        "v1_resources",
        false,
        None,
        &["parent_resource_type_id", "parent_resource_id"],
    ),
    (
        "idx_resources_parent_resource_id_v1",
        "v1_resources",
        true,
        None,
        &["external_id", "sync_id"],
    ),
    (
        "idx_entitlements_resource_id_v1",
        "v1_entitlements",
        false,
        None,
        &["resource_type_id", "resource_id"],
    ),
    (
        "idx_entitlements_external_sync_v1",
        "v1_entitlements",
        true,
        None,
        &["external_id", "sync_id"],
    ),
    (
        "idx_sync_runs_sync_id_v1",
        "v1_sync_runs",
        true,
        None,
        &["sync_id"],
    ),
    (
        "idx_grants_resource_type_id_resource_id_v1",
        "v1_grants",
        false,
        None,
        &["resource_type_id", "resource_id"],
    ),
    (
        "idx_grants_principal_id_v1",
        "v1_grants",
        false,
        None,
        &["principal_resource_type_id", "principal_resource_id"],
    ),
    (
        "idx_grants_entitlement_id_principal_id_v1",
        "v1_grants",
        false,
        None,
        &[
            "entitlement_id",
            "principal_resource_type_id",
            "principal_resource_id",
        ],
    ),
    (
        "idx_grants_external_sync_v1",
        "v1_grants",
        true,
        None,
        &["external_id", "sync_id"],
    ),
    (
        "idx_grants_entitlement_sync_grant_v1",
        "v1_grants",
        false,
        None,
        &["entitlement_id", "sync_id", "id"],
    ),
    (
        "idx_grants_sync_expansion_v1",
        "v1_grants",
        false,
        Some("expansion is not null"),
        &["sync_id"],
    ),
    (
        "idx_grants_sync_needs_expansion_v1",
        "v1_grants",
        false,
        Some("needs_expansion = 1"),
        &["sync_id"],
    ),
    (
        "idx_assets_external_sync_v1",
        "v1_assets",
        true,
        None,
        &["external_id", "sync_id"],
    ),
    (
        "idx_session_store_sync_key_v1",
        "v1_connector_sessions",
        true,
        None,
        &["sync_id", "key"],
    ),
];

#[test]
fn tables_columns_and_indexes_match_the_sdk() {
    let (_dir, _info, snap) = build(|_| Ok(()));
    let tables: Vec<_> = snap.tables.iter().map(|t| t.name.as_str()).collect();
    let expected: Vec<_> = TABLES.iter().map(|(n, _)| *n).collect();
    assert_eq!(tables, expected, "tables in creation order, nothing else");
    for ((name, cols), table) in TABLES.iter().zip(&snap.tables) {
        // SQLite reports well-known type names upper-cased; the declared text is lower-case.
        let got: Vec<_> = table
            .columns
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.decl_type.to_ascii_lowercase(),
                    c.not_null,
                    c.default.as_deref(),
                )
            })
            .collect();
        let want: Vec<_> = cols
            .iter()
            .map(|(n, t, nn, d)| (*n, t.to_string(), *nn, *d))
            .collect();
        assert_eq!(got, want, "columns of {name}");
        assert!(
            table.columns[0].primary_key,
            "{name}.id is the integer primary key"
        );
    }
    // Compared by name: the writer builds the big grant indexes in bulk around
    // expansion, so `sqlite_master` lists them in another order than the SDK
    // creates them. Readers look indexes up by name (`CREATE INDEX IF NOT
    // EXISTS`), so only the set, names and definitions matter to them.
    let mut got: Vec<_> = snap
        .indexes
        .iter()
        .map(|i| {
            (
                i.name.as_str(),
                i.table.as_str(),
                i.unique,
                i.where_clause.as_deref(),
                i.columns.iter().map(String::as_str).collect::<Vec<_>>(),
            )
        })
        .collect();
    let mut expected: Vec<_> = INDEXES
        .iter()
        .map(|(n, t, u, p, c)| (*n, *t, *u, *p, c.to_vec()))
        .collect();
    got.sort_by_key(|i| i.0);
    expected.sort_by_key(|i| i.0);
    assert_eq!(got, expected);
    assert!(!snap.wal_header, "the file must not be left in WAL mode");
    assert_eq!((snap.assets, snap.connector_sessions), (0, 0));
}
