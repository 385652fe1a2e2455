//! Deterministic tenant generation: the same `DataConfig` always gives the same tenant.
//!
//! ChaCha8 is used rather than `StdRng` because its output is specified and stable across
//! `rand` releases, so a seed keeps naming the same tenant.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, SecondsFormat};
use rand::seq::SliceRandom;
use rand::seq::index::sample;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::DataConfig;
use crate::model::{
    ACCESS_CLASSES, AccountStatus, AccountType, Group, OPERATIONS, OPERATIONS_IN_MATRIX,
    Permission, PrincipalKind, ROLE_PRINCIPALS, Space, Tenant, User,
};

const FIRST: [&str; 32] = [
    "Alice", "Bob", "Chris", "Dana", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy", "John",
    "Joanna", "Karl", "Laura", "Mark", "Nina", "Oscar", "Peggy", "Quentin", "Rita", "Sybil",
    "Trent", "Uma", "Victor", "Wendy", "Xavier", "Yara", "Zoe", "Jo", "Ana", "Mei", "Ravi",
];
const LAST: [&str; 24] = [
    "Reid", "Weaver", "Smith", "Jones", "Garcia", "Miller", "Davis", "Lopez", "Wilson", "Moore",
    "Taylor", "Thomas", "Jackson", "White", "Harris", "Martin", "Young", "King", "Wright", "Scott",
    "Green", "Baker", "Adams", "Nelson",
];
const APPS: [&str; 6] = [
    "Automation for Jira",
    "Slack",
    "Trello",
    "System",
    "Jira Service Management Widget",
    "Microsoft Teams for Confluence",
];
const WORDS: [&str; 24] = [
    "platform",
    "payments",
    "security",
    "design",
    "marketing",
    "sales",
    "support",
    "data",
    "infra",
    "mobile",
    "web",
    "legal",
    "finance",
    "people",
    "research",
    "growth",
    "docs",
    "ops",
    "quality",
    "release",
    "analytics",
    "partners",
    "identity",
    "search",
];
const LOCALES: [&str; 4] = ["en_US", "en_GB", "de_DE", "fr_FR"];
const ZONES: [&str; 4] = [
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Sydney",
];
/// The first users are ordinary licensed accounts so that credentials can act as them.
const RESERVED_USERS: usize = 8;
const FIRST_SPACE_ID: u64 = 163_841;
const FIRST_PERMISSION_ID: u64 = 2_000_000;

pub fn generate(cfg: &DataConfig) -> Tenant {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let cloud_id = uuid(&mut rng);
    let mut users = gen_users(cfg, &mut rng);
    let groups = gen_groups(cfg, &users, &mut rng);
    let mut tenant = Tenant {
        cloud_id,
        users: Vec::new(),
        groups,
        spaces: Vec::new(),
        user_index: HashMap::new(),
        group_index: HashMap::new(),
    };
    tenant.spaces = gen_spaces(cfg, &mut users, tenant.groups.len(), &mut rng);
    tenant.users = users;
    tenant.rebuild_indices();
    tenant
}

fn uuid(rng: &mut ChaCha8Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn account_id(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..3) {
        0 => {
            let mut b = [0u8; 12];
            rng.fill_bytes(&mut b);
            b.iter().map(|x| format!("{x:02x}")).collect()
        }
        1 => format!("557058:{}", uuid(rng)),
        _ => format!("712020:{}", uuid(rng)),
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn gen_users(cfg: &DataConfig, rng: &mut ChaCha8Rng) -> Vec<User> {
    let mut seen = HashSet::with_capacity(cfg.users);
    let mut users = Vec::with_capacity(cfg.users);
    for i in 0..cfg.users {
        let mut id = account_id(rng);
        while !seen.insert(id.clone()) {
            id = account_id(rng);
        }
        let ordinary = i < RESERVED_USERS;
        let r: f64 = rng.random();
        let account_type = if ordinary || r >= 0.075 {
            AccountType::Atlassian
        } else if r < 0.07 {
            AccountType::App
        } else {
            AccountType::Customer
        };
        let first = pick(rng, &FIRST);
        let last = pick(rng, &LAST);
        let mut user = User {
            account_id: id,
            account_type,
            status: AccountStatus::Active,
            name: format!("{first} {last}"),
            public_name: format!("{first} {last}"),
            email: format!(
                "{}.{}{}@acme.example",
                first.to_lowercase(),
                last.to_lowercase(),
                i
            ),
            email_visible: ordinary || rng.random_bool(0.55),
            is_guest: false,
            locale: pick(rng, &LOCALES),
            time_zone: pick(rng, &ZONES),
            personal_space: None,
        };
        match account_type {
            AccountType::App => {
                let app = pick(rng, &APPS);
                user.name = app.to_owned();
                user.public_name = app.to_owned();
                user.email = String::new();
                user.email_visible = false;
            }
            AccountType::Atlassian if !ordinary => {
                let s: f64 = rng.random();
                if s < 0.035 {
                    user.status = if rng.random_bool(0.8) {
                        AccountStatus::Inactive
                    } else {
                        AccountStatus::Closed
                    };
                } else if s < 0.055 {
                    user.is_guest = true;
                }
                if !user.email_visible {
                    user.public_name = first.to_lowercase();
                }
            }
            _ => {}
        }
        users.push(user);
    }
    users
}

/// Where a user may appear in group lists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Licensed user in no group: found only through `search/user`.
    SearchOnly,
    /// In no group and absent from search: no sync can find it.
    Nowhere,
    Groups,
}

fn reach(u: &User, i: usize, rng: &mut ChaCha8Rng) -> Reach {
    if i < RESERVED_USERS {
        return Reach::Groups;
    }
    match u.account_type {
        AccountType::Customer => Reach::Nowhere,
        AccountType::App => Reach::Groups,
        AccountType::Atlassian => {
            if u.licensed() {
                if rng.random_bool(0.03) {
                    Reach::SearchOnly
                } else {
                    Reach::Groups
                }
            } else if rng.random_bool(0.3) {
                Reach::Nowhere
            } else {
                Reach::Groups
            }
        }
    }
}

fn subset(rng: &mut ChaCha8Rng, pool: &[u32], share: f64) -> Vec<u32> {
    pool.iter()
        .copied()
        .filter(|_| rng.random_bool(share))
        .collect()
}

fn gen_groups(cfg: &DataConfig, users: &[User], rng: &mut ChaCha8Rng) -> Vec<Group> {
    let mut staff = Vec::new(); // atlassian, non-guest, reachable through groups
    let mut guests = Vec::new();
    let mut apps = Vec::new();
    for (i, u) in users.iter().enumerate() {
        if reach(u, i, rng) != Reach::Groups {
            continue;
        }
        let idx = i as u32;
        match u.account_type {
            AccountType::App => apps.push(idx),
            AccountType::Atlassian if u.is_guest => guests.push(idx),
            AccountType::Atlassian => staff.push(idx),
            AccountType::Customer => {}
        }
    }
    let first_n = |n: usize| (0..users.len().min(n) as u32).collect::<Vec<_>>();
    let with_apps = |share: f64, app_share: f64, rng: &mut ChaCha8Rng| {
        let mut m = subset(rng, &staff, share);
        m.extend(subset(rng, &apps, app_share));
        m
    };
    let jira = with_apps(0.4, 1.0, rng);
    let labs = subset(rng, &staff, 0.2);
    let jira_labs = with_apps(0.1, 0.5, rng);
    let fixed: Vec<(&str, &'static str, Vec<u32>)> = vec![
        ("confluence-users-acme", "ADMINS", staff.clone()),
        ("site-admins", "ADMINS", first_n(3)),
        ("confluence-guests-acme", "ADMINS", guests.clone()),
        ("jira-users-acme", "ADMINS", jira),
        ("org-admins", "EXTERNAL", first_n(2)),
        ("confluence-users-acme-labs", "ADMINS", labs),
        ("jira-users-acme-labs", "ADMINS", jira_labs),
        ("confluence-admins-acme", "ADMINS", first_n(5)),
    ];
    let mut specs: Vec<(String, &'static str, &'static str, Vec<u32>)> = fixed
        .into_iter()
        .take(cfg.groups)
        .map(|(n, m, members)| (n.to_owned(), m, "USERBASE_GROUP", members))
        .collect();
    if cfg.edge_case_groups {
        let edges: [(&str, usize); 3] =
            [("edge-empty", 0), ("edge-full-400", 400), ("edge-450", 450)];
        for (name, size) in edges {
            if specs.len() < cfg.groups && staff.len() >= size {
                specs.push((
                    name.to_owned(),
                    "ADMINS",
                    "USERBASE_GROUP",
                    staff[..size].to_vec(),
                ));
            }
        }
    }
    let mut k = 0usize;
    while specs.len() < cfg.groups {
        k += 1;
        let word = pick(rng, &WORDS);
        let size = match rng.random_range(0..100) {
            0..70 => rng.random_range(1..=30),
            70..95 => rng.random_range(30..=300),
            _ => rng.random_range(300..=2000),
        }
        .min(staff.len());
        let mut members: Vec<u32> = sample(rng, staff.len(), size)
            .into_iter()
            .map(|i| staff[i])
            .collect();
        if !apps.is_empty() && rng.random_bool(0.02) {
            members.push(apps[rng.random_range(0..apps.len())]);
        }
        let managed = *["ADMINS", "TEAM_MEMBERS", "OPEN", "EXTERNAL"]
            .get(rng.random_range(0..4))
            .unwrap_or(&"ADMINS");
        specs.push((
            format!("team-{word}-{k}"),
            managed,
            "TEAM_COLLABORATION",
            members,
        ));
    }
    let mut groups: Vec<Group> = specs
        .into_iter()
        .map(|(name, managed_by, usage_type, mut members)| {
            members.sort_unstable();
            members.dedup();
            Group {
                id: uuid(rng),
                name,
                managed_by,
                usage_type,
                members,
            }
        })
        .collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    groups
}

fn timestamp(rng: &mut ChaCha8Rng) -> String {
    let base = DateTime::from_timestamp(1_546_300_800, 0).unwrap_or_default();
    let t = base + Duration::seconds(rng.random_range(0..189_216_000));
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn gen_spaces(
    cfg: &DataConfig,
    users: &mut [User],
    group_count: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Space> {
    let mut owners: Vec<u32> = users
        .iter()
        .enumerate()
        .filter(|(_, u)| u.account_type == AccountType::Atlassian)
        .map(|(i, _)| i as u32)
        .collect();
    owners.shuffle(rng);
    let (total, personal) = match cfg.personal_spaces_per_user_percent {
        // Personal spaces on top of `spaces`, for a share of the Atlassian accounts.
        Some(pct) => {
            let n = owners.len() * usize::from(pct.min(100)) / 100;
            (cfg.spaces + n, n)
        }
        None => {
            let n = cfg.spaces * usize::from(cfg.personal_space_percent.min(100)) / 100;
            (cfg.spaces, n.min(owners.len()))
        }
    };
    // Exact counts, in a seeded order, so personal and other spaces interleave by id.
    let mut is_personal: Vec<bool> = (0..total).map(|i| i < personal).collect();
    is_personal.shuffle(rng);
    let mut next_perm = FIRST_PERMISSION_ID;
    let mut spaces = Vec::with_capacity(total);
    for (i, personal) in is_personal.into_iter().enumerate() {
        let id = FIRST_SPACE_ID + i as u64;
        let user_count = users.len() as u32;
        let random_user = |rng: &mut ChaCha8Rng| {
            if user_count == 0 {
                0
            } else {
                rng.random_range(0..user_count)
            }
        };
        let personal_owner = if personal { owners.pop() } else { None };
        let mut space = match personal_owner {
            Some(owner) => {
                let u = &mut users[owner as usize];
                u.personal_space = Some(id);
                let key: String = u
                    .account_id
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .collect();
                Space {
                    id,
                    key: format!("~{key}"),
                    name: u.name.clone(),
                    kind: "personal",
                    status: "current",
                    author: owner,
                    owner,
                    homepage_id: 0,
                    created_at: String::new(),
                    permissions: Vec::new(),
                }
            }
            None => {
                let word = pick(rng, &WORDS);
                let kind = match rng.random_range(0..10) {
                    0 => "collaboration",
                    1 => "knowledge_base",
                    _ => "global",
                };
                let status = if rng.random_bool(0.1) {
                    "archived"
                } else {
                    "current"
                };
                let author = random_user(rng);
                Space {
                    id,
                    key: format!("{}{}", word.to_uppercase(), i),
                    name: format!("{}{} {}", word[..1].to_uppercase(), &word[1..], i),
                    kind,
                    status,
                    author,
                    owner: random_user(rng),
                    homepage_id: 0,
                    created_at: String::new(),
                    permissions: Vec::new(),
                }
            }
        };
        space.homepage_id = 10_000_000 + id * 3;
        space.created_at = timestamp(rng);
        space.permissions =
            gen_permissions(cfg, &space, users.len(), group_count, &mut next_perm, rng);
        spaces.push(space);
    }
    spaces
}

fn gen_permissions(
    cfg: &DataConfig,
    space: &Space,
    user_count: usize,
    group_count: usize,
    next_id: &mut u64,
    rng: &mut ChaCha8Rng,
) -> Vec<Permission> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut push =
        |kind: PrincipalKind, principal: u32, operation: u8, out: &mut Vec<Permission>| {
            if seen.insert((kind as u8, principal, operation)) {
                out.push(Permission {
                    id: *next_id,
                    kind,
                    principal,
                    operation,
                });
                *next_id += 1;
            }
        };
    let target = if space.kind == "personal" {
        // The owner's own grants: a realistic mix inside and outside the matrix.
        if user_count > 0 {
            for op in [0u8, 1, 2, 3, 4, 6, 7, 10, 12, 14, 8, 21, 22] {
                push(PrincipalKind::User, space.owner, op, &mut out);
            }
        }
        out.len() + rng.random_range(0..=10)
    } else {
        let (lo, hi) = cfg.permissions_per_space;
        rng.random_range(lo.min(hi)..=hi.max(lo))
    };
    let mut attempts = 0usize;
    while out.len() < target && attempts < target * 20 {
        attempts += 1;
        // Mostly in-matrix operations, with a steady share the reference drops.
        let operation = if rng.random_bool(0.8) {
            rng.random_range(0..OPERATIONS_IN_MATRIX)
        } else {
            rng.random_range(OPERATIONS_IN_MATRIX..OPERATIONS.len())
        } as u8;
        let (kind, principal) = match rng.random_range(0..100) {
            0..55 if user_count > 0 => {
                (PrincipalKind::User, rng.random_range(0..user_count as u32))
            }
            55..85 if group_count > 0 => (
                PrincipalKind::Group,
                rng.random_range(0..group_count as u32),
            ),
            0..93 => (
                PrincipalKind::Role,
                rng.random_range(0..ROLE_PRINCIPALS.len() as u32),
            ),
            _ => (
                PrincipalKind::AccessClass,
                rng.random_range(0..ACCESS_CLASSES.len() as u32),
            ),
        };
        push(kind, principal, operation, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;

    #[test]
    fn same_seed_same_tenant() {
        let cfg = DataConfig::preset(Preset::Small);
        let a = generate(&cfg);
        let b = generate(&cfg);
        assert_eq!(a.cloud_id, b.cloud_id);
        assert_eq!(a.users.len(), 100);
        assert_eq!(a.groups.len(), 20);
        assert_eq!(a.spaces.len(), 10);
        let ids = |t: &Tenant| {
            t.users
                .iter()
                .map(|u| u.account_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&a), ids(&b));
    }

    #[test]
    fn personal_space_shares() {
        let mut cfg = DataConfig::preset(Preset::Small);
        let t = generate(&cfg);
        let personal = |t: &Tenant| t.spaces.iter().filter(|s| s.kind == "personal").count();
        assert_eq!(personal(&t), 5);
        cfg.personal_spaces_per_user_percent = Some(50);
        let t = generate(&cfg);
        let atlassian = t
            .users
            .iter()
            .filter(|u| u.account_type == AccountType::Atlassian)
            .count();
        assert_eq!(personal(&t), atlassian / 2);
        assert_eq!(t.spaces.len(), 10 + atlassian / 2);
        let owners: HashSet<u32> = t
            .spaces
            .iter()
            .filter(|s| s.kind == "personal")
            .map(|s| s.owner)
            .collect();
        assert_eq!(owners.len(), atlassian / 2, "one personal space per owner");
    }

    #[test]
    fn empty_tenant_is_empty() {
        let t = generate(&DataConfig::empty());
        assert!(t.users.is_empty() && t.groups.is_empty() && t.spaces.is_empty());
    }
}
