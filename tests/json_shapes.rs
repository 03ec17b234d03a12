//! Every returned type serializes with the seeds' field names. Each test compares our key set
//! with the seed example's: ours must be the seed's keys plus a declared list of extras, so an
//! extra or a missing key is always a deliberate change.

mod common;

use std::collections::BTreeSet;

use common::*;
use orgdb::{
    json, MemberQuery, MemberRef, NewInvitation, NewProject, OrganizationPatch, ResourceKind,
};
use serde_json::Value;

/// Seed 000, `GET /v1/organization` data.
const SEED_ORG: &str = r#"{"id":"org_123","name":"My Company","slug":"my-company",
 "description":"Building cool stuff with AI","plan":"pro","created_at":"2024-01-15T10:30:00Z",
 "settings":{"pin_protection":true},
 "limits":{"mcps":10,"api_keys":10,"team_members":5,"monthly_requests":50000},
 "usage":{"mcps":3,"api_keys":2,"team_members":2,"monthly_requests":12500}}"#;
/// Seed 000, a member list row.
const SEED_MEMBER: &str = r#"{"id":"user_123","email":"alice@example.com","name":"Alice Smith",
 "role":"owner","joined_at":"2024-01-15T10:30:00Z","last_active":"2024-01-20T15:45:00Z"}"#;
/// Seed 000, the list envelope.
const SEED_LIST: &str =
    r#"{"success":true,"data":[],"pagination":{"page":1,"per_page":20,"total":2,"total_pages":1}}"#;
/// Seed 000, PATCH /v1/organization response data.
const SEED_PATCH: &str = r#"{"id":"org_123","name":"New Company Name","slug":"my-company",
 "description":"Updated description","updated_at":"2024-01-20T16:00:00Z"}"#;
/// Seed 000, invite response data.
const SEED_INVITE: &str = r#"{"invite_id":"inv_789","email":"newuser@example.com","role":"member",
 "expires_at":"2024-01-27T16:00:00Z","invite_url":"https://dashboard.plexmcp.com/invite/inv_789"}"#;
/// Seed 000, usage response data.
const SEED_USAGE: &str = r#"{"period":"month","start_date":"2024-01-01T00:00:00Z",
 "end_date":"2024-01-31T23:59:59Z","requests":{"total":12500,"limit":50000,"percentage":25},
 "by_mcp":[{"mcp_id":"mcp_123","name":"Weather API","requests":8000}],
 "by_day":[{"date":"2024-01-15","requests":450}]}"#;
/// Seed 000, PATCH member response data.
const SEED_ROLE: &str = r#"{"id":"user_456","email":"bob@example.com","role":"admin","updated_at":"2024-01-20T16:00:00Z"}"#;
/// Seed 000, DELETE member response data.
const SEED_REMOVED: &str = r#"{"removed":true,"user_id":"user_456"}"#;
/// Seed 000, error envelopes.
const SEED_FORBIDDEN: &str = r#"{"success":false,"error":{"code":"forbidden","message":"You don't have permission to perform this action"}}"#;
const SEED_VALIDATION: &str = r#"{"success":false,"error":{"code":"validation_error","message":"Invalid role specified","details":{"role":"Must be one of: viewer, member, admin"}}}"#;
/// Seed 001, create organization request fields, which the organization must carry.
const SEED_001_ORG_FIELDS: [&str; 7] = [
    "name",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "zipcode",
    "country",
];

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

/// Ours = seed ∪ extras, exactly.
#[track_caller]
fn assert_shape(ours: &Value, seed: &str, extras: &[&str]) {
    let seed: Value = serde_json::from_str(seed).unwrap();
    let mut want = keys(&seed);
    want.extend(extras.iter().map(|s| s.to_string()));
    assert_eq!(keys(ours), want, "ours: {ours:#}");
}

const ORG_EXTRAS: [&str; 9] = [
    "external_id",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "zipcode",
    "country",
    "metadata",
    "updated_at",
];

#[test]
fn organization_details_match_seed_000() {
    let (db, _) = db();
    let (org, owner) = org(&db, "My Company", "pro");
    let details = db.get_organization(&actor(&owner), &org).unwrap();
    let v = json::ok(&details);
    assert_eq!(v["success"], true);
    let data = &v["data"];
    assert_shape(data, SEED_ORG, &ORG_EXTRAS);
    let seed: Value = serde_json::from_str(SEED_ORG).unwrap();
    for nested in ["settings", "limits", "usage"] {
        assert_eq!(keys(&data[nested]), keys(&seed[nested]), "{nested}");
    }
    assert_eq!(
        data["limits"], seed["limits"],
        "pro's limits are the seed's figures"
    );
    assert_eq!(
        data["created_at"], "2024-01-15T10:30:00Z",
        "RFC 3339 with Z"
    );
    for field in SEED_001_ORG_FIELDS {
        assert!(data.get(field).is_some(), "seed 001 field {field}");
    }
    // The text variant (what the bindings' `*_json` calls return) is the same JSON.
    let text: Value = serde_json::from_str(&json::ok_text(&details)).unwrap();
    assert_eq!(text, v);
    // Unlimited serializes as null.
    db.set_plan(&actor(&owner), &org, "enterprise").unwrap();
    let v = json::ok(&db.get_organization(&actor(&owner), &org).unwrap());
    assert_eq!(v["data"]["limits"]["monthly_requests"], Value::Null);
}

#[test]
fn member_list_page_and_mutations_match_seed_000() {
    let (db, _) = db();
    let (org, owner) = org(&db, "My Company", "pro");
    let a = actor(&owner);
    let bob = user(&db, "Bob");
    db.add_member(&a, &org, &bob.id, "member").unwrap();
    let page = db.list_members(&a, &org, &MemberQuery::default()).unwrap();
    let v = json::page(&page);
    assert_shape(&v, SEED_LIST, &[]);
    let text: Value = serde_json::from_str(&json::page_text(&page)).unwrap();
    assert_eq!(text, v);
    let first = db
        .list_members(
            &a,
            &org,
            &MemberQuery {
                per_page: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(first.next_cursor.is_some());
    let text: Value = serde_json::from_str(&json::page_text(&first)).unwrap();
    assert_eq!(text, json::page(&first), "with next_cursor");
    let seed_list: Value = serde_json::from_str(SEED_LIST).unwrap();
    assert_eq!(keys(&v["pagination"]), keys(&seed_list["pagination"]));
    assert_shape(
        &v["data"][0],
        SEED_MEMBER,
        &["membership_id", "updated_at", "status", "deactivated_at"],
    );
    assert_eq!(v["data"][1]["last_active"], Value::Null);
    assert_eq!(v["data"][1]["status"], "active");
    assert_eq!(v["data"][1]["deactivated_at"], Value::Null);

    let changed = db
        .update_member_role(&a, &org, &MemberRef::User(bob.id.clone()), "admin")
        .unwrap();
    let v = json::ok(&changed);
    for k in keys(&serde_json::from_str(SEED_ROLE).unwrap()) {
        assert!(v["data"].get(&k).is_some(), "role change lacks {k}");
    }
    assert_eq!(v["data"]["role"], "admin");

    let removed = db
        .remove_member(&a, &org, &MemberRef::User(bob.id.clone()))
        .unwrap();
    assert_shape(
        &json::ok(&removed)["data"],
        SEED_REMOVED,
        &["membership_id"],
    );

    let patched = db
        .update_organization(
            &a,
            &org,
            &OrganizationPatch {
                name: Some("New Company Name".into()),
                ..Default::default()
            },
        )
        .unwrap();
    for k in keys(&serde_json::from_str(SEED_PATCH).unwrap()) {
        assert!(
            json::ok(&patched)["data"].get(&k).is_some(),
            "patch lacks {k}"
        );
    }
}

#[test]
fn invitation_matches_seed_000_and_001() {
    let (db, _) = db();
    let (org, owner) = org(&db, "My Company", "team");
    let a = actor(&owner);
    let p = db
        .create_project(
            &a,
            &org,
            &NewProject {
                name: "P".into(),
                description: None,
            },
        )
        .unwrap();
    let created = db
        .create_invitation(
            &a,
            &org,
            &NewInvitation {
                email: "newuser@example.com".into(),
                role: Some("MEMBER".into()),
                project_id: Some(p.id),
                project_role: Some("MEMBER".into()),
                expires_in: None,
            },
        )
        .unwrap();
    let v = json::ok(&created);
    // Seed 000's five keys at the top level of `data`, with the invitation's own fields
    // (seed 001's) beside them.
    let inv = &v["data"];
    assert_shape(
        inv,
        SEED_INVITE,
        &[
            "id",
            "organization_id",
            "project_id",
            "project_role",
            "status",
            "invited_by",
            "created_at",
            "accepted_at",
            "token",
        ],
    );
    assert_eq!(inv["invite_id"], inv["id"]);
    assert_eq!(inv["role"], "member", "roles serialize lower-case");
}

#[test]
fn usage_report_matches_seed_000() {
    let (db, _) = db();
    let (org, owner) = org(&db, "My Company", "pro");
    let a = actor(&owner);
    let mcp = db
        .register_resource(&a, &org, ResourceKind::Mcp, "Weather API")
        .unwrap();
    let key = db
        .register_resource(&a, &org, ResourceKind::ApiKey, "CI")
        .unwrap();
    db.record_usage(&org, &orgdb::UsageEvent::new(3).resource(&mcp.id))
        .unwrap();
    db.record_usage(&org, &orgdb::UsageEvent::new(2).resource(&key.id))
        .unwrap();
    let report = db
        .usage_report(&a, &org, &orgdb::UsageQuery::default())
        .unwrap();
    let v = json::ok(&report);
    let data = &v["data"];
    // `by_api_key` stands beside the seed's `by_mcp`, never instead of it.
    assert_shape(data, SEED_USAGE, &["by_api_key"]);
    let seed: Value = serde_json::from_str(SEED_USAGE).unwrap();
    assert_eq!(keys(&data["requests"]), keys(&seed["requests"]));
    assert_eq!(keys(&data["by_mcp"][0]), keys(&seed["by_mcp"][0]));
    assert_eq!(keys(&data["by_day"][0]), keys(&seed["by_day"][0]));
    assert_eq!(
        keys(&data["by_api_key"][0]),
        ["api_key_id", "name", "requests"].map(String::from).into()
    );
    assert_eq!(data["by_api_key"][0]["requests"], 2);
}

#[test]
fn error_envelopes_match_seed_000() {
    let (db, _) = db();
    let (org, owner) = org(&db, "My Company", "team");
    let viewer = user(&db, "Viewer");
    db.add_member(&actor(&owner), &org, &viewer.id, "viewer")
        .unwrap();
    let err = db
        .update_member_role(
            &actor(&viewer),
            &org,
            &MemberRef::User(owner.id.clone()),
            "admin",
        )
        .unwrap_err();
    let v = json::error(&err);
    let seed: Value = serde_json::from_str(SEED_FORBIDDEN).unwrap();
    assert_eq!(v, seed, "identical to the seed, message included");
    assert_eq!(json::respond::<()>(&Err(err)).0, 403);

    let err = db
        .update_member_role(
            &actor(&owner),
            &org,
            &MemberRef::User(viewer.id.clone()),
            "superuser",
        )
        .unwrap_err();
    let v = json::error(&err);
    let seed: Value = serde_json::from_str(SEED_VALIDATION).unwrap();
    assert_eq!(keys(&v["error"]), keys(&seed["error"]));
    assert_eq!(v["error"]["code"], "validation_error");
    assert_eq!(v["error"]["message"], "Invalid role specified");
    assert!(v["error"]["details"]["role"]
        .as_str()
        .unwrap()
        .starts_with("Must be one of: viewer, member, admin"));

    let err = db
        .remove_member(&actor(&owner), &org, &MemberRef::User("user_x".into()))
        .unwrap_err();
    assert_eq!(json::error(&err)["error"]["message"], "Member not found");
    assert_eq!(err.http_status(), 404);
}

#[test]
fn other_types_serialize_with_snake_case_names() {
    let (db, _) = db();
    let (org, owner) = org(&db, "My Company", "team");
    let a = actor(&owner);
    let r = db
        .register_resource(&a, &org, ResourceKind::ApiKey, "CI")
        .unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["kind"], "api_key");
    assert_eq!(
        keys(&v),
        [
            "created_at",
            "id",
            "kind",
            "name",
            "organization_id",
            "removed_at"
        ]
        .map(String::from)
        .into()
    );
    let events = serde_json::to_value(db.audit_log(&a, &org, 0, 10).unwrap()).unwrap();
    let e = &events[0];
    assert_eq!(
        keys(e),
        [
            "action",
            "actor",
            "at",
            "details",
            "id",
            "organization_id",
            "seq",
            "target"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(e["details"]["plan"], "team", "details are JSON, not text");
}

/// Entitlements and usage receipts: snake_case names, tagged enums, and the receipt's
/// additions (`over`, `overage`) beside its fields.
#[test]
fn entitlements_and_receipts_serialize_as_documented() {
    let (db, _) = db();
    let (org, owner) = org(&db, "My Company", "team");
    let sso = serde_json::to_value(db.entitlement(&actor(&owner), &org, "sso").unwrap()).unwrap();
    assert_eq!(
        sso,
        serde_json::json!({
            "name": "sso", "kind": "feature", "has_access": true, "limit": null, "used": null,
            "source": "plan", "enforcement": {"mode": "hard"}, "plan": "team"
        })
    );
    let seats = serde_json::to_value(
        db.entitlement(&actor(&owner), &org, "team_members")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(seats["limit"], 25);
    assert_eq!(seats["used"], 1);
    let value: orgdb::EntitlementValue =
        serde_json::from_value(serde_json::json!({"kind": "limit", "limit": null})).unwrap();
    assert_eq!(value, orgdb::EntitlementValue::Limit { limit: None });
    let value: orgdb::EntitlementValue =
        serde_json::from_value(serde_json::json!({"kind": "feature", "enabled": false})).unwrap();
    assert_eq!(value, orgdb::EntitlementValue::Feature { enabled: false });
    let soft: orgdb::Enforcement =
        serde_json::from_value(serde_json::json!({"mode": "soft", "overage_cap": 10})).unwrap();
    assert_eq!(
        soft,
        orgdb::Enforcement::Soft {
            overage_cap: Some(10)
        }
    );
    let receipt =
        serde_json::to_value(db.record_usage(&org, &orgdb::UsageEvent::new(3)).unwrap()).unwrap();
    assert_eq!(
        receipt,
        serde_json::json!({"duplicate": false, "used": 3, "limit": 1_000_000,
            "remaining": 999_997, "over": false, "overage": 0,
            "period_start": "2024-01-01", "period_end": "2024-01-31"})
    );
    // The quota period and the current period.
    let anchored = orgdb::QuotaPeriod::Anchored {
        anchor: chrono::NaiveDate::from_ymd_opt(2023, 5, 31).unwrap(),
    };
    let period = serde_json::to_value(
        db.set_billing_anchor(&orgdb::Actor::System, &org, anchored)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        period,
        serde_json::json!({"rule": {"kind": "anchored", "anchor": "2023-05-31"},
            "period_start": "2023-12-31", "period_end": "2024-01-30"})
    );
    let back: orgdb::QuotaPeriod =
        serde_json::from_value(serde_json::json!({"kind": "week"})).unwrap();
    assert_eq!(back, orgdb::QuotaPeriod::Week);
}
