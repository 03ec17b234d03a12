//! Model-based property test of memberships (with deactivation and reactivation), roles,
//! invitations, plans and seats, and of resources (mcps / api_keys limits, and the `projects`
//! limit the run's catalog gives `free`), usage
//! (monthly_requests per UTC month, idempotency keys, all-or-nothing batches, check_quota) and
//! projects with their members.
//!
//! proptest generates random operation sequences over a small universe (5 users, up to 3
//! organizations, plans `free` (3 seats) and `pro` (5 seats)). Each operation runs on the
//! database and on a plain in-memory reference model that implements SPEC sections 3–5 on its
//! own; the outcome (Ok, or the error `code()`) must agree, and after every operation the
//! observable state (member lists in order under each status filter, seats, plan, invitation
//! statuses, each user's organizations and permissions, `Db::check`) must agree too.
//!
//! Deactivation as modeled: a deactivated member keeps their membership, role, join time and
//! project memberships, holds no seat, and cannot act in the organization (authorized like a
//! non-member, `forbidden`; leaving is `forbidden` too); only active owners count for the
//! last-owner rule; a role change or an ownership transfer to them, an invitation accepted by
//! them, adding or inviting them again are `conflict`. Reactivation is seat-checked like an add
//! and follows the no-escalation rule for the member's role.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::Datelike;
use chrono::{DateTime, TimeDelta, Utc};
use orgdb::{
    Action, Actor, AuditEvent, Db, InvitationQuery, InvitationStatus, ManualClock, Member,
    MemberQuery, MemberRef, MemberStatus, NewInvitation, NewOrganization, NewProject, NewUser,
    ResourceKind, Role, UsageEvent, UsageRecorder,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError};

const USERS: usize = 5;
/// Member searches, one per step in turn: an email prefix, one user's email, every name, one
/// whole name with its case changed, a later word of a name, nothing.
const SEARCHES: [&str; 6] = ["u", "U2@", "user", " USER 3", "4", "x"];
const MAX_ORGS: usize = 3;
/// Role strings given to the API: valid ones in several spellings, and invalid ones.
const ROLE_STRS: [&str; 9] = [
    "viewer",
    "member",
    "admin",
    "owner",
    "ADMIN",
    "Owner",
    " Member ",
    "superuser",
    "",
];
/// Plans: two real ones and one unknown to the catalog.
const PLANS: [&str; 3] = ["free", "pro", "gold"];
/// Clock steps, in minutes (the last two straddle the 7-day invitation lifetime).
const STEPS: [i64; 5] = [60, 25 * 60, 3 * 24 * 60, 7 * 24 * 60 - 1, 7 * 24 * 60];
const LIFETIME_DAYS: i64 = 7;
/// Actor choices beyond the user slots and the system: resolved when the operation runs.
const OWNER_OF_ORG: usize = USERS + 1;
const ADMIN_OF_ORG: usize = USERS + 2;
const MISSING_ORG: &str = "org_01AAAAAAAAAAAAAAAAAAAAAAAA";
const MISSING_MEM: &str = "mem_01AAAAAAAAAAAAAAAAAAAAAAAA";
const MISSING_INV: &str = "inv_01AAAAAAAAAAAAAAAAAAAAAAAA";
const MISSING_PROJ: &str = "proj_01AAAAAAAAAAAAAAAAAAAAAAAA";
const MISSING_RES: &str = "res_01AAAAAAAAAAAAAAAAAAAAAAAA";
/// `projects` overrides the model sets: cleared (the plan's), 0, 1, 3, unlimited.
const PROJECT_OVERRIDES: [Option<Option<u64>>; 5] = [
    None,
    Some(Some(0)),
    Some(Some(1)),
    Some(Some(3)),
    Some(None),
];
/// Project roles given to `add_project_member` (all grantable by an admin).
const PROJECT_ROLES: [&str; 3] = ["viewer", "member", "admin"];
/// Idempotency keys are drawn from a pool this small, so repeats happen.
const KEY_POOL: usize = 3;
/// How long an idempotency key is remembered at least (SPEC: 48 hours).
const KEY_HOURS: i64 = 48;
const MISSING_TOKEN: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One operation. Indices are resolved against the run's state: `actor` 0–4 is a user slot,
/// 5 is `Actor::System`, 6 the longest-standing owner of the organization and 7 its
/// longest-standing admin (else owner); `org` beyond the organizations created so far names a missing
/// organization; `inv` counts back from the newest invitation (modulo their number); `email` 0–4 is a user
/// slot's email, 5 an outsider, 6 an invalid address.
#[derive(Debug, Clone)]
enum Op {
    CreateUser {
        user: usize,
    },
    CreateOrg {
        owner: usize,
        plan: usize,
    },
    AddMember {
        actor: usize,
        org: usize,
        user: usize,
        role: usize,
    },
    UpdateRole {
        actor: usize,
        org: usize,
        target: usize,
        by_membership: bool,
        role: usize,
    },
    RemoveMember {
        actor: usize,
        org: usize,
        target: usize,
        by_membership: bool,
    },
    /// `Db::deactivate_member`; `target` 0–4 is a user slot as for `RemoveMember`, `5 + k`
    /// the k-th active member of the organization, a non-owner while there is any (see
    /// `Run::pick_target`).
    Deactivate {
        actor: usize,
        org: usize,
        target: usize,
        by_membership: bool,
    },
    /// `Db::reactivate_member`; `target` as for `Deactivate`, but `5 + k` picks among the
    /// deactivated members while there are any.
    Reactivate {
        actor: usize,
        org: usize,
        target: usize,
        by_membership: bool,
    },
    Leave {
        user: usize,
        org: usize,
    },
    Transfer {
        actor: usize,
        org: usize,
        to: usize,
    },
    Invite {
        actor: usize,
        org: usize,
        email: usize,
        shout: bool,
        role: usize,
    },
    Accept {
        inv: usize,
        user: Option<usize>,
        stale: bool,
    },
    Decline {
        inv: usize,
    },
    Revoke {
        actor: usize,
        org: Option<usize>,
        inv: usize,
    },
    Resend {
        actor: usize,
        org: Option<usize>,
        inv: usize,
    },
    Advance {
        step: usize,
    },
    /// `Db::set_entitlement_override` of `projects` by `actor` (only the system may):
    /// `limit` picks one of `PROJECT_OVERRIDES`.
    SetProjectLimit {
        actor: usize,
        org: usize,
        limit: usize,
    },
    SetPlan {
        actor: usize,
        org: usize,
        plan: usize,
    },
    DeleteOrg {
        actor: usize,
        org: usize,
    },
    DeleteUser {
        user: usize,
    },
    RegisterResource {
        actor: usize,
        org: usize,
        api_key: bool,
    },
    RemoveResource {
        actor: usize,
        org: usize,
        res: ResSel,
    },
    /// Through `Db::record_usage`, or (`recorder`, events without a key) through a
    /// `UsageRecorder` kept from the first use, so it outlives deletions and plan changes.
    RecordUsage {
        org: usize,
        event: Ev,
        recorder: bool,
    },
    /// Through `Db::record_usage_batch`, or (`recorder`, events without a key) through the
    /// organization's recorder's `record_many`, which answers one receipt for the batch.
    RecordBatch {
        org: usize,
        events: Vec<Ev>,
        recorder: bool,
    },
    CheckQuota {
        org: usize,
        count: u64,
    },
    CreateProject {
        actor: usize,
        org: usize,
    },
    DeleteProject {
        actor: usize,
        org: usize,
        proj: usize,
    },
    AddProjectMember {
        actor: usize,
        org: usize,
        proj: usize,
        user: usize,
        role: usize,
    },
    RemoveProjectMember {
        actor: usize,
        org: usize,
        proj: usize,
        user: usize,
    },
}

/// A resource reference: `own` picks among the organization's own resources (live ones for
/// usage; any for removal), else among all resources ever registered (counting back from the
/// newest); with nothing to pick, an unknown id.
#[derive(Debug, Clone, Copy)]
struct ResSel {
    own: bool,
    idx: usize,
}

/// One usage event: a count, an optional resource and an optional idempotency key (a pool
/// slot).
#[derive(Debug, Clone)]
struct Ev {
    count: u64,
    res: Option<ResSel>,
    key: Option<usize>,
}

// ---------------------------------------------------------------------------------------------
// The reference model.

/// Roles as ranks: viewer 0, member 1, admin 2, owner 3.
type Rank = u8;
const ADMIN: Rank = 2;
const OWNER: Rank = 3;

fn rank_name(r: Rank) -> &'static str {
    ["viewer", "member", "admin", "owner"][r as usize]
}

fn parse_rank(text: &str) -> Option<Rank> {
    match text.trim().to_ascii_lowercase().as_str() {
        "viewer" => Some(0),
        "member" => Some(1),
        "admin" => Some(2),
        "owner" => Some(3),
        _ => None,
    }
}

fn same_role(role: Role, rank: Rank) -> bool {
    role.as_str() == rank_name(rank)
}

/// (mcps, api_keys, monthly_requests) of a plan.
fn usage_limits(plan: &str) -> (u64, u64, u64) {
    match plan {
        "free" => (3, 2, 1000),
        "pro" => (10, 10, 50_000),
        other => panic!("no limits for plan {other}"),
    }
}

fn month_of(t: DateTime<Utc>) -> (i32, u32) {
    (t.year(), t.month())
}

/// The `projects` limit of a plan (the run's catalog gives `free` one).
fn project_limit(plan: &str) -> Option<u64> {
    match plan {
        "free" => Some(2),
        _ => None,
    }
}

fn seat_limit(plan: &str) -> u64 {
    match plan {
        "free" => 3,
        "pro" => 5,
        other => panic!("no limit for plan {other}"),
    }
}

/// Nobody grants a role above their own; only owners (and the system) grant `owner`.
fn may_grant(actor: Option<Rank>, granted: Rank) -> bool {
    match actor {
        None | Some(OWNER) => true,
        Some(r) => granted <= r && granted != OWNER,
    }
}

/// Admins never act on an owner.
fn may_manage(actor: Option<Rank>, target: Rank) -> bool {
    match actor {
        None | Some(OWNER) => true,
        Some(_) => target != OWNER,
    }
}

#[derive(Debug, Clone)]
struct MUser {
    id: String,
    email: String,
    alive: bool,
}

#[derive(Debug, Clone)]
struct MMember {
    role: Rank,
    joined: DateTime<Utc>,
    mem_id: String,
    /// When the member was deactivated; `None` while active (holds a seat, may act).
    deactivated: Option<DateTime<Utc>>,
}

impl MMember {
    fn joined(role: Rank, at: DateTime<Utc>, mem_id: String) -> MMember {
        MMember {
            role,
            joined: at,
            mem_id,
            deactivated: None,
        }
    }

    fn active(&self) -> bool {
        self.deactivated.is_none()
    }

    /// The status `list_members` reports.
    fn status(&self) -> MemberStatus {
        if self.active() {
            MemberStatus::Active
        } else {
            MemberStatus::Deactivated
        }
    }
}

#[derive(Debug, Clone)]
struct MOrg {
    id: String,
    alive: bool,
    plan: &'static str,
    /// user id → membership.
    members: BTreeMap<String, MMember>,
    /// user id → the id of a membership since removed (a stale reference).
    old_mem_ids: BTreeMap<String, String>,
    /// Requests per UTC (year, month).
    usage: BTreeMap<(i32, u32), u64>,
    /// Idempotency-key pool slot → (generation, when recorded). A slot whose key is older
    /// than 48 hours moves to a fresh generation (a new key string), since SPEC only says
    /// keys are remembered *at least* 48 hours.
    keys: BTreeMap<usize, (u32, Option<DateTime<Utc>>)>,
    /// The `projects` override: `None` follows the plan, `Some(None)` is unlimited.
    projects_override: Option<Option<u64>>,
}

#[derive(Debug, Clone)]
struct MRes {
    id: String,
    org: usize,
    kind: ResourceKind,
    live: bool,
}

#[derive(Debug, Clone)]
struct MProj {
    id: String,
    org: usize,
    alive: bool,
    members: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Pending,
    Accepted,
    Declined,
    Revoked,
}

#[derive(Debug, Clone)]
struct MInv {
    id: String,
    token: String,
    old_tokens: Vec<String>,
    org: usize,
    email: String,
    role: Rank,
    status: St,
    expires: DateTime<Utc>,
    /// Deleted with its organization.
    gone: bool,
}

type Code = &'static str;
type Expect = Result<(), Code>;

struct Model {
    now: DateTime<Utc>,
    users: Vec<MUser>,
    orgs: Vec<MOrg>,
    invs: Vec<MInv>,
    res: Vec<MRes>,
    projs: Vec<MProj>,
}

impl Model {
    fn status(&self, inv: &MInv) -> InvitationStatus {
        match inv.status {
            St::Pending if self.now >= inv.expires => InvitationStatus::Expired,
            St::Pending => InvitationStatus::Pending,
            St::Accepted => InvitationStatus::Accepted,
            St::Declined => InvitationStatus::Declined,
            St::Revoked => InvitationStatus::Revoked,
        }
    }

    fn is_pending(&self, inv: &MInv) -> bool {
        !inv.gone && self.status(inv) == InvitationStatus::Pending
    }

    /// The pending, unexpired invitation of `email` in organization `org`.
    fn pending_for(&self, org: usize, email: &str) -> Option<usize> {
        self.invs
            .iter()
            .position(|i| i.org == org && i.email == email && self.is_pending(i))
    }

    /// Active members (a deactivated one holds no seat).
    fn active_members(&self, org: usize) -> u64 {
        self.orgs[org]
            .members
            .values()
            .filter(|m| m.active())
            .count() as u64
    }

    /// Active members plus pending, unexpired invitations.
    fn seats(&self, org: usize) -> u64 {
        let pending = self
            .invs
            .iter()
            .filter(|i| i.org == org && self.is_pending(i))
            .count();
        self.active_members(org) + pending as u64
    }

    /// Active owners: the last-owner rule counts only these.
    fn owners(&self, org: usize) -> usize {
        self.orgs[org]
            .members
            .values()
            .filter(|m| m.active() && m.role == OWNER)
            .count()
    }

    /// Whether `m` is the organization's last active owner.
    fn last_owner(&self, org: usize, m: &MMember) -> bool {
        m.active() && m.role == OWNER && self.owners(org) <= 1
    }

    fn live_org(&self, org: Option<usize>) -> Result<usize, Code> {
        match org {
            Some(o) if self.orgs[o].alive => Ok(o),
            _ => Err("not_found"),
        }
    }

    fn actor_id(&self, actor: usize) -> Option<&str> {
        (actor < USERS).then(|| self.users[actor].id.as_str())
    }

    /// The permission check: `not_found` for a missing organization, then `forbidden` below
    /// `min` (a deactivated member has no role to act with). Returns the actor's role (`None`
    /// for the system).
    fn authorize(&self, actor: usize, org: Option<usize>, min: Rank) -> Result<Option<Rank>, Code> {
        let o = self.live_org(org)?;
        match self.actor_id(actor) {
            None => Ok(None),
            Some(id) => match self.orgs[o].members.get(id) {
                Some(m) if m.active() && m.role >= min => Ok(Some(m.role)),
                _ => Err("forbidden"),
            },
        }
    }

    fn user_by_email(&self, email: &str) -> Option<&MUser> {
        self.users.iter().find(|u| u.alive && u.email == email)
    }

    /// The member a reference resolves to in organization `o`.
    fn resolve(&self, o: usize, who: &MemberRef) -> Option<(String, MMember)> {
        let members = &self.orgs[o].members;
        match who {
            MemberRef::User(id) => members.get(id).map(|m| (id.clone(), m.clone())),
            MemberRef::Membership(mid) => members
                .iter()
                .find(|(_, m)| &m.mem_id == mid)
                .map(|(u, m)| (u.clone(), m.clone())),
        }
    }

    /// A reference to `target` in `org`: by user id, or by a membership id (the live one; a
    /// stale one of this organization; one of another organization; or an unknown one).
    fn member_ref(&self, org: Option<usize>, target: usize, by_membership: bool) -> MemberRef {
        let uid = &self.users[target].id;
        if !by_membership {
            return MemberRef::User(uid.clone());
        }
        if let Some(o) = org {
            if let Some(m) = self.orgs[o].members.get(uid) {
                return MemberRef::Membership(m.mem_id.clone());
            }
            if let Some(old) = self.orgs[o].old_mem_ids.get(uid) {
                return MemberRef::Membership(old.clone());
            }
        }
        let elsewhere = self
            .orgs
            .iter()
            .find_map(|other| other.members.get(uid).map(|m| m.mem_id.clone()));
        MemberRef::Membership(elsewhere.unwrap_or_else(|| MISSING_MEM.to_owned()))
    }

    /// Requests counted in organization `o` this UTC month.
    fn used(&self, o: usize) -> u64 {
        self.orgs[o]
            .usage
            .get(&month_of(self.now))
            .copied()
            .unwrap_or(0)
    }

    fn live_resources(&self, o: usize, kind: Option<ResourceKind>) -> u64 {
        self.res
            .iter()
            .filter(|r| r.org == o && r.live && kind.is_none_or(|k| r.kind == k))
            .count() as u64
    }

    /// `not_found` unless `r` is a live resource of organization `o`.
    fn live_res_in(&self, r: Option<usize>, o: Option<usize>) -> Result<usize, Code> {
        match r {
            Some(r) if self.res[r].live && Some(self.res[r].org) == o => Ok(r),
            _ => Err("not_found"),
        }
    }

    /// `not_found` unless `p` is a live project of organization `o`.
    fn live_proj_in(&self, p: Option<usize>, o: Option<usize>) -> Result<usize, Code> {
        match p {
            Some(p) if self.projs[p].alive && Some(self.projs[p].org) == o => Ok(p),
            _ => Err("not_found"),
        }
    }

    fn remove_member(&mut self, o: usize, uid: &str) {
        if let Some(m) = self.orgs[o].members.remove(uid) {
            self.orgs[o].old_mem_ids.insert(uid.to_owned(), m.mem_id);
        }
        for p in self.projs.iter_mut().filter(|p| p.org == o) {
            p.members.remove(uid);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running both.

struct Run {
    db: Db,
    clock: ManualClock,
    m: Model,
    /// Operations run so far (for messages).
    step: usize,
    /// Recorders by organization id, made on first use.
    recorders: std::collections::HashMap<String, UsageRecorder>,
    /// The outcome both agreed on for the last operation (Ok for one that answers nothing,
    /// like `Advance`): what the smoke tests check their expectations against.
    outcome: Expect,
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Compares the database's outcome with the model's expectation; returns the Ok value when
/// both succeeded, `None` when both failed with the same code.
fn agree<T: std::fmt::Debug>(
    op: &Op,
    expected: Expect,
    actual: orgdb::Result<T>,
) -> Result<Option<T>, String> {
    match (expected, actual) {
        (Ok(()), Ok(v)) => Ok(Some(v)),
        (Err(code), Err(e)) if e.code() == code => Ok(None),
        (Ok(()), Err(e)) => Err(format!(
            "{op:?}: model expects Ok, db says {} ({e:?})",
            e.code()
        )),
        (Err(code), Ok(v)) => Err(format!("{op:?}: model expects {code}, db says Ok({v:?})")),
        (Err(code), Err(e)) => Err(format!(
            "{op:?}: model expects {code}, db says {} ({e:?})",
            e.code()
        )),
    }
}

/// One member list row as compared: user id, role, membership id, join time, status and
/// deactivation time.
type MemberRow = (
    String,
    &'static str,
    String,
    DateTime<Utc>,
    MemberStatus,
    Option<DateTime<Utc>>,
);

fn row_of(r: &Member) -> MemberRow {
    (
        r.id.clone(),
        r.role.as_str(),
        r.membership_id.clone(),
        r.joined_at,
        r.status,
        r.deactivated_at,
    )
}

fn member_row(uid: &str, m: &MMember) -> MemberRow {
    (
        uid.to_owned(),
        rank_name(m.role),
        m.mem_id.clone(),
        m.joined,
        m.status(),
        m.deactivated,
    )
}

fn email_of(slot: usize) -> String {
    format!("u{slot}@example.com")
}

impl Run {
    fn new() -> Run {
        // The default catalog, with a `projects` limit on `free` (see `project_limit`).
        let clock = ManualClock::new(common::start());
        let mut opts = orgdb::Options::with_clock(clock.clone());
        let free = opts.plans.plans.get_mut("free").unwrap();
        free.named_limits.insert("projects".into(), Some(2));
        let db = common::db_with(opts);
        let mut users = Vec::new();
        for slot in 0..USERS {
            let u = db
                .create_user(&NewUser {
                    email: email_of(slot),
                    name: format!("User {slot}"),
                })
                .unwrap();
            users.push(MUser {
                id: u.id,
                email: u.email,
                alive: true,
            });
        }
        Run {
            db,
            clock,
            m: Model {
                now: common::start(),
                users,
                orgs: Vec::new(),
                invs: Vec::new(),
                res: Vec::new(),
                projs: Vec::new(),
            },
            step: 0,
            recorders: std::collections::HashMap::new(),
            outcome: Ok(()),
        }
    }

    /// The organization's recorder, kept after the first success.
    fn recorder(&mut self, org_id: &str) -> orgdb::Result<UsageRecorder> {
        if let Some(r) = self.recorders.get(org_id) {
            return Ok(r.clone());
        }
        let r = self.db.usage_recorder(org_id)?;
        self.recorders.insert(org_id.to_owned(), r.clone());
        Ok(r)
    }

    /// A resource reference (see [`ResSel`]): the model's index, if any, and the id to send.
    fn res_sel(&self, o: Option<usize>, sel: ResSel, live_only: bool) -> (Option<usize>, String) {
        let own: Vec<usize> = (0..self.m.res.len())
            .filter(|&r| Some(self.m.res[r].org) == o && (self.m.res[r].live || !live_only))
            .collect();
        let all: Vec<usize> = (0..self.m.res.len()).collect();
        let pool = if sel.own && !own.is_empty() { own } else { all };
        match pool.len() {
            0 => (None, MISSING_RES.to_owned()),
            n => {
                let r = pool[n - 1 - sel.idx % n];
                (Some(r), self.m.res[r].id.clone())
            }
        }
    }

    /// A project of the organization (any, also deleted), or every fifth choice any project;
    /// with none, an unknown id.
    fn proj_sel(&self, o: Option<usize>, idx: usize) -> (Option<usize>, String) {
        let own: Vec<usize> = (0..self.m.projs.len())
            .filter(|&p| Some(self.m.projs[p].org) == o)
            .collect();
        let all: Vec<usize> = (0..self.m.projs.len()).collect();
        let pool = if idx % 5 != 4 && !own.is_empty() {
            own
        } else {
            all
        };
        match pool.len() {
            0 => (None, MISSING_PROJ.to_owned()),
            n => {
                let p = pool[n - 1 - (idx / 5) % n];
                (Some(p), self.m.projs[p].id.clone())
            }
        }
    }

    /// The idempotency key of pool slot `slot` in organization `o`, and whether it is known
    /// (recorded less than 48 hours ago). An older key is retired: the slot moves to a new key.
    fn key_for(&mut self, o: Option<usize>, slot: usize) -> (String, bool) {
        let Some(o) = o else {
            return (format!("key-{slot}"), false);
        };
        let now = self.m.now;
        let entry = self.m.orgs[o].keys.entry(slot).or_insert((0, None));
        if entry
            .1
            .is_some_and(|at| now - at >= TimeDelta::hours(KEY_HOURS))
        {
            *entry = (entry.0 + 1, None);
        }
        (format!("key-{slot}-{}", entry.0), entry.1.is_some())
    }

    /// User slots 0–4 as they are; `USERS + k` the k-th member of the organization (by user
    /// id), so project operations mostly name organization members.
    fn pick_member(&self, user: usize, o: Option<usize>) -> String {
        if user >= USERS {
            if let Some(o) = o {
                let members = &self.m.orgs[o].members;
                if let Some(uid) = members.keys().nth((user - USERS) % members.len().max(1)) {
                    return uid.clone();
                }
            }
        }
        self.m.users[user % USERS].id.clone()
    }

    /// The target of a deactivation or reactivation as a user slot: slots 0–4 as they are (so
    /// non-members, owners and deactivated members are named too); `USERS + k` the k-th
    /// member of the organization by user id among those the operation changes: for a
    /// deactivation (`deactivate`) active non-owners, else active members; for a reactivation
    /// deactivated members; with none of those, any member.
    fn pick_target(&self, target: usize, o: Option<usize>, deactivate: bool) -> usize {
        let Some(o) = o.filter(|_| target >= USERS) else {
            return target % USERS;
        };
        let members = &self.m.orgs[o].members;
        let pool = |keep: &dyn Fn(&MMember) -> bool| -> Vec<&String> {
            members
                .iter()
                .filter(|(_, m)| keep(m))
                .map(|(u, _)| u)
                .collect()
        };
        let candidates = if deactivate {
            vec![
                pool(&|m| m.active() && m.role != OWNER),
                pool(&|m| m.active()),
            ]
        } else {
            vec![pool(&|m| !m.active())]
        };
        let pool = candidates
            .into_iter()
            .find(|p| !p.is_empty())
            .unwrap_or_else(|| members.keys().collect());
        pool.get((target - USERS) % pool.len().max(1))
            .and_then(|uid| self.m.users.iter().position(|u| &u.id == *uid))
            .unwrap_or(target % USERS)
    }

    fn actor(&self, a: usize) -> Actor {
        match self.m.actor_id(a) {
            Some(id) => Actor::user(id),
            None => Actor::System,
        }
    }

    /// Resolves the actor choices 6 (an active owner of the organization) and 7 (an active
    /// admin of it, else an owner) to a user slot; other choices stay as they are.
    fn pick_actor(&self, a: usize, org: Option<usize>) -> usize {
        let wanted: &[Rank] = match a {
            OWNER_OF_ORG => &[OWNER],
            ADMIN_OF_ORG => &[ADMIN, OWNER],
            _ => return a,
        };
        let Some(o) = org else { return 0 };
        let members = &self.m.orgs[o].members;
        for role in wanted {
            let mut holders: Vec<(&DateTime<Utc>, &String)> = members
                .iter()
                .filter(|(_, m)| m.active() && m.role == *role)
                .map(|(u, m)| (&m.joined, u))
                .collect();
            holders.sort();
            if let Some((_, uid)) = holders.first() {
                if let Some(slot) = self.m.users.iter().position(|u| &u.id == *uid) {
                    return slot;
                }
            }
        }
        0
    }

    fn org_sel(&self, o: usize) -> (Option<usize>, String) {
        match self.m.orgs.get(o) {
            Some(org) => (Some(o), org.id.clone()),
            None => (None, MISSING_ORG.to_owned()),
        }
    }

    /// Invitation `i`, counting back from the newest.
    fn inv_sel(&self, i: usize) -> Option<usize> {
        let n = self.m.invs.len();
        (n > 0).then(|| n - 1 - i % n)
    }

    /// The organization's audit events after `after` (none for an unknown organization).
    fn audit_after(&self, org_id: &str, after: u64) -> Result<Vec<AuditEvent>, String> {
        let mut out: Vec<AuditEvent> = Vec::new();
        loop {
            let from = out.last().map_or(after, |e| e.seq);
            match self.db.audit_log(&Actor::System, org_id, from, 1000) {
                Ok(events) => {
                    let full = events.len() == 1000;
                    out.extend(events);
                    if !full {
                        return Ok(out);
                    }
                }
                Err(e) if e.code() == "not_found" => return Ok(out),
                Err(e) => return Err(format!("audit_log {org_id}: {e:?}")),
            }
        }
    }

    /// The sequence number of the organization's newest audit event (0 for none).
    fn audit_last_seq(&self, org_id: &str) -> Result<u64, String> {
        Ok(self.audit_after(org_id, 0)?.last().map_or(0, |e| e.seq))
    }

    /// [`agree`], remembering the outcome.
    fn agree<T: std::fmt::Debug>(
        &mut self,
        op: &Op,
        expected: Expect,
        actual: orgdb::Result<T>,
    ) -> Result<Option<T>, String> {
        self.outcome = expected;
        agree(op, expected, actual)
    }

    fn apply(&mut self, op: &Op) -> Result<(), String> {
        self.outcome = Ok(());
        match *op {
            Op::CreateUser { user } => {
                let expected = if self.m.users[user].alive {
                    Err("conflict")
                } else {
                    Ok(())
                };
                let got = self.db.create_user(&NewUser {
                    email: email_of(user),
                    name: format!("User {user}"),
                });
                if let Some(u) = self.agree(op, expected, got)? {
                    self.m.users[user] = MUser {
                        id: u.id,
                        email: u.email,
                        alive: true,
                    };
                }
            }
            Op::CreateOrg { owner, plan } => {
                if self.m.orgs.len() >= MAX_ORGS {
                    return Ok(());
                }
                let expected = if plan >= 2 {
                    Err("validation_error")
                } else if !self.m.users[owner].alive {
                    Err("not_found")
                } else {
                    Ok(())
                };
                let got = self.db.create_organization(
                    &self.m.users[owner].id,
                    &NewOrganization {
                        name: "Org".into(),
                        plan: Some(PLANS[plan].into()),
                        ..Default::default()
                    },
                );
                if let Some(created) = self.agree(op, expected, got)? {
                    let ms = &created.membership;
                    ensure!(
                        ms.role == Role::Owner && ms.user_id == self.m.users[owner].id,
                        "{op:?}: creator is not the owner: {ms:?}"
                    );
                    let uid = self.m.users[owner].id.clone();
                    let members =
                        BTreeMap::from([(uid, MMember::joined(OWNER, self.m.now, ms.id.clone()))]);
                    self.m.orgs.push(MOrg {
                        id: created.organization.id,
                        alive: true,
                        plan: PLANS[plan],
                        members,
                        old_mem_ids: BTreeMap::new(),
                        usage: BTreeMap::new(),
                        keys: BTreeMap::new(),
                        projects_override: None,
                    });
                }
            }
            Op::AddMember {
                actor,
                org,
                user,
                role,
            } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let uid = self.m.users[user].id.clone();
                let expected = (|| {
                    let actor_role = self.m.authorize(actor, o, ADMIN)?;
                    let o = o.unwrap();
                    let rank = parse_rank(ROLE_STRS[role]).ok_or("validation_error")?;
                    if !may_grant(actor_role, rank) {
                        return Err("forbidden");
                    }
                    if !self.m.users[user].alive {
                        return Err("not_found");
                    }
                    if self.m.orgs[o].members.contains_key(&uid) {
                        return Err("conflict");
                    }
                    let pending = self.m.pending_for(o, &self.m.users[user].email);
                    let used = self.m.seats(o) - u64::from(pending.is_some());
                    if used + 1 > seat_limit(self.m.orgs[o].plan) {
                        return Err("quota_exceeded");
                    }
                    Ok(())
                })();
                let got = self
                    .db
                    .add_member(&self.actor(actor), &org_id, &uid, ROLE_STRS[role]);
                if let Some(member) = self.agree(op, expected, got)? {
                    let o = o.unwrap();
                    let rank = parse_rank(ROLE_STRS[role]).unwrap();
                    ensure!(
                        member.id == uid && same_role(member.role, rank),
                        "{op:?}: returned {member:?}"
                    );
                    if let Some(i) = self.m.pending_for(o, &self.m.users[user].email) {
                        self.m.invs[i].status = St::Accepted;
                    }
                    ensure!(
                        member.status == MemberStatus::Active && member.deactivated_at.is_none(),
                        "{op:?}: returned {member:?}"
                    );
                    self.m.orgs[o]
                        .members
                        .insert(uid, MMember::joined(rank, self.m.now, member.membership_id));
                }
            }
            Op::UpdateRole {
                actor,
                org,
                target,
                by_membership,
                role,
            } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let who = self.m.member_ref(o, target, by_membership);
                let expected = (|| {
                    let actor_role = self.m.authorize(actor, o, ADMIN)?;
                    let o = o.unwrap();
                    // Permission (which needs the target) is decided before the role string
                    // is parsed.
                    let (_, m) = self.m.resolve(o, &who).ok_or("not_found")?;
                    if !may_manage(actor_role, m.role) {
                        return Err("forbidden");
                    }
                    let rank = parse_rank(ROLE_STRS[role]).ok_or("validation_error")?;
                    if !may_grant(actor_role, rank) {
                        return Err("forbidden");
                    }
                    // A deactivated member's role does not change (not even to the same one).
                    if !m.active() {
                        return Err("conflict");
                    }
                    if rank != OWNER && self.m.last_owner(o, &m) {
                        return Err("conflict");
                    }
                    Ok(())
                })();
                let got =
                    self.db
                        .update_member_role(&self.actor(actor), &org_id, &who, ROLE_STRS[role]);
                if let Some(member) = self.agree(op, expected, got)? {
                    let o = o.unwrap();
                    let rank = parse_rank(ROLE_STRS[role]).unwrap();
                    let (uid, _) = self.m.resolve(o, &who).unwrap();
                    ensure!(
                        member.id == uid
                            && same_role(member.role, rank)
                            && member.status == MemberStatus::Active,
                        "{op:?}: returned {member:?}"
                    );
                    self.m.orgs[o].members.get_mut(&uid).unwrap().role = rank;
                }
            }
            Op::RemoveMember {
                actor,
                org,
                target,
                by_membership,
            } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let who = self.m.member_ref(o, target, by_membership);
                let expected = (|| {
                    let actor_role = self.m.authorize(actor, o, ADMIN)?;
                    let o = o.unwrap();
                    let (_, m) = self.m.resolve(o, &who).ok_or("not_found")?;
                    if !may_manage(actor_role, m.role) {
                        return Err("forbidden");
                    }
                    // A deactivated owner is not counted, so removing one never loses the last.
                    if self.m.last_owner(o, &m) {
                        return Err("conflict");
                    }
                    Ok(())
                })();
                let got = self.db.remove_member(&self.actor(actor), &org_id, &who);
                if let Some(removed) = self.agree(op, expected, got)? {
                    let o = o.unwrap();
                    let (uid, m) = self.m.resolve(o, &who).unwrap();
                    ensure!(
                        removed.user_id == uid && removed.membership_id == m.mem_id,
                        "{op:?}: returned {removed:?}"
                    );
                    self.m.remove_member(o, &uid);
                }
            }
            Op::Deactivate {
                actor,
                org,
                target,
                by_membership,
            }
            | Op::Reactivate {
                actor,
                org,
                target,
                by_membership,
            } => {
                let reactivate = matches!(op, Op::Reactivate { .. });
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let target = self.pick_target(target, o, !reactivate);
                let who = self.m.member_ref(o, target, by_membership);
                // Whether the status changes (else an Ok answer changes nothing, unaudited).
                let mut changes = false;
                let expected = (|| {
                    // Deactivating needs what removing needs; reactivating what adding needs.
                    let actor_role = self.m.authorize(actor, o, ADMIN)?;
                    let o = o.unwrap();
                    let (_, m) = self.m.resolve(o, &who).ok_or("not_found")?;
                    if !may_manage(actor_role, m.role) {
                        return Err("forbidden");
                    }
                    if reactivate {
                        // Bringing a member back grants their role again: no escalation.
                        if !may_grant(actor_role, m.role) {
                            return Err("forbidden");
                        }
                        if m.active() {
                            return Ok(());
                        }
                        if self.m.seats(o) + 1 > seat_limit(self.m.orgs[o].plan) {
                            return Err("quota_exceeded");
                        }
                    } else {
                        if !m.active() {
                            return Ok(());
                        }
                        if self.m.last_owner(o, &m) {
                            return Err("conflict");
                        }
                    }
                    changes = true;
                    Ok(())
                })();
                let seen = self.audit_last_seq(&org_id)?;
                let got = if reactivate {
                    self.db.reactivate_member(&self.actor(actor), &org_id, &who)
                } else {
                    self.db.deactivate_member(&self.actor(actor), &org_id, &who)
                };
                let result = self.agree(op, expected, got)?;
                let audited: Vec<(String, String, String)> = self
                    .audit_after(&org_id, seen)?
                    .into_iter()
                    .filter(|e| e.action.starts_with("member."))
                    .map(|e| (e.action, e.target, e.actor))
                    .collect();
                let mut want_audit = Vec::new();
                if let Some(member) = result {
                    let o = o.unwrap();
                    let now = self.m.now;
                    let (uid, old) = self.m.resolve(o, &who).unwrap();
                    let label = self.m.actor_id(actor).unwrap_or("system").to_owned();
                    let new = self.m.orgs[o].members.get_mut(&uid).unwrap();
                    if changes {
                        new.deactivated = if reactivate { None } else { Some(now) };
                        let action = if reactivate {
                            "member.reactivated"
                        } else {
                            "member.deactivated"
                        };
                        want_audit.push((action.to_owned(), old.mem_id, label));
                    }
                    ensure!(
                        member.id == uid
                            && member.membership_id == new.mem_id
                            && same_role(member.role, new.role)
                            && member.joined_at == new.joined
                            && member.status == new.status()
                            && member.deactivated_at == new.deactivated,
                        "{op:?}: returned {member:?}, model {new:?}"
                    );
                }
                ensure!(
                    audited == want_audit,
                    "{op:?}: audit events (action, target, actor) {audited:?}, model {want_audit:?}"
                );
            }
            Op::Leave { user, org } => {
                let (o, org_id) = self.org_sel(org);
                let uid = self.m.users[user].id.clone();
                let expected = (|| {
                    let o = self.m.live_org(o)?;
                    let m = self.m.orgs[o].members.get(&uid).ok_or("not_found")?;
                    // Leaving is acting in the organization, which a deactivated member cannot.
                    if !m.active() {
                        return Err("forbidden");
                    }
                    if self.m.last_owner(o, m) {
                        return Err("conflict");
                    }
                    Ok(())
                })();
                let got = self.db.leave_organization(&uid, &org_id);
                if self.agree(op, expected, got)?.is_some() {
                    self.m.remove_member(o.unwrap(), &uid);
                }
            }
            Op::Transfer { actor, org, to } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let to_id = self.m.users[to].id.clone();
                let expected = (|| {
                    self.m.authorize(actor, o, OWNER)?;
                    let o = o.unwrap();
                    if self.m.actor_id(actor) == Some(to_id.as_str()) {
                        return Err("validation_error");
                    }
                    let target = self.m.orgs[o].members.get(&to_id).ok_or("not_found")?;
                    if !target.active() || target.role == OWNER {
                        return Err("conflict");
                    }
                    Ok(())
                })();
                let got = self
                    .db
                    .transfer_ownership(&self.actor(actor), &org_id, &to_id);
                if let Some(member) = self.agree(op, expected, got)? {
                    let o = o.unwrap();
                    ensure!(
                        member.id == to_id && member.role == Role::Owner,
                        "{op:?}: returned {member:?}"
                    );
                    let members = &mut self.m.orgs[o].members;
                    members.get_mut(&to_id).unwrap().role = OWNER;
                    if actor < USERS {
                        let me = self.m.users[actor].id.clone();
                        members.get_mut(&me).unwrap().role = ADMIN;
                    }
                }
            }
            Op::Invite {
                actor,
                org,
                email,
                shout,
                role,
            } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let normalized = match email {
                    0..USERS => email_of(email),
                    5 => "outsider@example.com".to_owned(),
                    _ => "not-an-email".to_owned(),
                };
                let given = if shout {
                    format!("  {}\t", normalized.to_uppercase())
                } else {
                    normalized.clone()
                };
                let expected = (|| {
                    let actor_role = self.m.authorize(actor, o, ADMIN)?;
                    let o = o.unwrap();
                    let rank = parse_rank(ROLE_STRS[role]);
                    if email > 5 || rank.is_none() {
                        return Err("validation_error");
                    }
                    if !may_grant(actor_role, rank.unwrap()) {
                        return Err("forbidden");
                    }
                    if let Some(u) = self.m.user_by_email(&normalized) {
                        if self.m.orgs[o].members.contains_key(&u.id) {
                            return Err("conflict");
                        }
                    }
                    if self.m.pending_for(o, &normalized).is_some() {
                        return Err("conflict");
                    }
                    if self.m.seats(o) + 1 > seat_limit(self.m.orgs[o].plan) {
                        return Err("quota_exceeded");
                    }
                    Ok(())
                })();
                let got = self.db.create_invitation(
                    &self.actor(actor),
                    &org_id,
                    &NewInvitation {
                        email: given,
                        role: Some(ROLE_STRS[role].to_owned()),
                        ..Default::default()
                    },
                );
                if let Some(created) = self.agree(op, expected, got)? {
                    let rank = parse_rank(ROLE_STRS[role]).unwrap();
                    let inv = &created.invitation;
                    let expires = self.m.now + TimeDelta::days(LIFETIME_DAYS);
                    ensure!(
                        inv.email == normalized
                            && same_role(inv.role, rank)
                            && inv.status == InvitationStatus::Pending
                            && inv.expires_at == expires,
                        "{op:?}: returned {inv:?}"
                    );
                    self.m.invs.push(MInv {
                        id: inv.id.clone(),
                        token: created.token,
                        old_tokens: Vec::new(),
                        org: o.unwrap(),
                        email: normalized,
                        role: rank,
                        status: St::Pending,
                        expires,
                        gone: false,
                    });
                }
            }
            Op::Accept { inv, user, stale } => {
                let i = self.inv_sel(inv);
                let token = match i {
                    None => MISSING_TOKEN.to_owned(),
                    Some(i) => {
                        let inv = &self.m.invs[i];
                        match inv.old_tokens.last() {
                            Some(old) if stale => old.clone(),
                            _ => inv.token.clone(),
                        }
                    }
                };
                let slot = match (user, i) {
                    (Some(u), _) => u,
                    (None, Some(i)) => (0..USERS)
                        .find(|&u| self.m.users[u].email == self.m.invs[i].email)
                        .unwrap_or(0),
                    (None, None) => 0,
                };
                let uid = self.m.users[slot].id.clone();
                let expected = (|| {
                    let i = i.ok_or("not_found")?;
                    let inv = &self.m.invs[i];
                    if inv.gone || token != inv.token {
                        return Err("not_found");
                    }
                    let u = &self.m.users[slot];
                    if !u.alive {
                        return Err("not_found");
                    }
                    let existing = self.m.orgs[inv.org].members.get(&uid);
                    let member = existing.is_some();
                    match self.m.status(inv) {
                        InvitationStatus::Pending => {}
                        InvitationStatus::Expired => return Err("invitation_expired"),
                        // A retry returns the membership as it is (also a deactivated one).
                        InvitationStatus::Accepted if inv.email == u.email && member => {
                            return Ok(())
                        }
                        _ => return Err("conflict"),
                    }
                    if inv.email != u.email {
                        return Err("forbidden");
                    }
                    // Only a reactivation brings a deactivated member back, not an invitation.
                    if existing.is_some_and(|m| !m.active()) {
                        return Err("conflict");
                    }
                    // The invitation's own seat turns into the member's: active members after
                    // the accept must fit.
                    let members = self.m.active_members(inv.org);
                    if !member && members + 1 > seat_limit(self.m.orgs[inv.org].plan) {
                        return Err("quota_exceeded");
                    }
                    Ok(())
                })();
                let got = self.db.accept_invitation(&token, &uid);
                if let Some(ms) = self.agree(op, expected, got)? {
                    let i = i.unwrap();
                    let (o, rank) = (self.m.invs[i].org, self.m.invs[i].role);
                    let now = self.m.now;
                    let org = &mut self.m.orgs[o];
                    ensure!(
                        ms.user_id == uid && ms.organization_id == org.id,
                        "{op:?}: returned {ms:?}"
                    );
                    match org.members.get(&uid) {
                        Some(existing) => ensure!(
                            ms.id == existing.mem_id
                                && same_role(ms.role, existing.role)
                                && ms.status == existing.status()
                                && ms.deactivated_at == existing.deactivated,
                            "{op:?}: returned {ms:?}, expected the existing {existing:?}"
                        ),
                        None => {
                            ensure!(
                                same_role(ms.role, rank) && ms.status == MemberStatus::Active,
                                "{op:?}: returned {ms:?}"
                            );
                            org.members
                                .insert(uid, MMember::joined(rank, now, ms.id.clone()));
                        }
                    }
                    self.m.invs[i].status = St::Accepted;
                }
            }
            Op::Decline { inv } => {
                let i = self.inv_sel(inv);
                let token = i.map_or(MISSING_TOKEN.to_owned(), |i| self.m.invs[i].token.clone());
                let expected = match i.map(|i| &self.m.invs[i]) {
                    None => Err("not_found"),
                    Some(inv) if inv.gone => Err("not_found"),
                    Some(inv) if inv.status == St::Pending => Ok(()),
                    Some(_) => Err("conflict"),
                };
                let got = self.db.decline_invitation(&token);
                if let Some(inv) = self.agree(op, expected, got)? {
                    ensure!(
                        inv.status == InvitationStatus::Declined,
                        "{op:?}: returned {inv:?}"
                    );
                    self.m.invs[i.unwrap()].status = St::Declined;
                }
            }
            Op::Revoke { actor, org, inv } | Op::Resend { actor, org, inv } => {
                let resend = matches!(op, Op::Resend { .. });
                let i = self.inv_sel(inv);
                let inv_id = i.map_or(MISSING_INV.to_owned(), |i| self.m.invs[i].id.clone());
                let (o, org_id) = match (org, i) {
                    (Some(o), _) => self.org_sel(o),
                    (None, Some(i)) => self.org_sel(self.m.invs[i].org),
                    (None, None) => self.org_sel(0),
                };
                let actor = self.pick_actor(actor, o);
                let expected = (|| {
                    self.m.authorize(actor, o, ADMIN)?;
                    let o = o.unwrap();
                    let i = i.ok_or("not_found")?;
                    let inv = &self.m.invs[i];
                    if inv.gone || inv.org != o {
                        return Err("not_found");
                    }
                    match self.m.status(inv) {
                        InvitationStatus::Pending => Ok(()),
                        InvitationStatus::Expired if resend => {
                            // Re-issuing an expired invitation is a new pending one: the
                            // same rules as creating it (SPEC: a pending invitation of a
                            // current member, or a second one, is `conflict`; seats hold).
                            if let Some(u) = self.m.user_by_email(&inv.email) {
                                if self.m.orgs[o].members.contains_key(&u.id) {
                                    return Err("conflict");
                                }
                            }
                            if self.m.pending_for(o, &inv.email).is_some() {
                                return Err("conflict");
                            }
                            if self.m.seats(o) + 1 > seat_limit(self.m.orgs[o].plan) {
                                return Err("quota_exceeded");
                            }
                            Ok(())
                        }
                        InvitationStatus::Expired => Ok(()),
                        _ => Err("conflict"),
                    }
                })();
                let i = i.unwrap_or(0);
                if resend {
                    let got = self
                        .db
                        .resend_invitation(&self.actor(actor), &org_id, &inv_id);
                    if let Some(created) = self.agree(op, expected, got)? {
                        let expires = self.m.now + TimeDelta::days(LIFETIME_DAYS);
                        let inv = &mut self.m.invs[i];
                        ensure!(
                            created.invitation.id == inv.id
                                && created.invitation.status == InvitationStatus::Pending
                                && created.invitation.expires_at == expires
                                && created.token != inv.token,
                            "{op:?}: returned {created:?}"
                        );
                        let old = std::mem::replace(&mut inv.token, created.token);
                        inv.old_tokens.push(old);
                        inv.status = St::Pending;
                        inv.expires = expires;
                    }
                } else {
                    let got = self
                        .db
                        .revoke_invitation(&self.actor(actor), &org_id, &inv_id);
                    if let Some(inv) = self.agree(op, expected, got)? {
                        ensure!(
                            inv.status == InvitationStatus::Revoked,
                            "{op:?}: returned {inv:?}"
                        );
                        self.m.invs[i].status = St::Revoked;
                    }
                }
            }
            Op::Advance { step } => {
                let by = TimeDelta::minutes(STEPS[step]);
                self.clock.advance(by);
                self.m.now += by;
            }
            Op::SetProjectLimit { actor, org, limit } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let wanted = PROJECT_OVERRIDES[limit];
                let expected = (|| {
                    if self.m.actor_id(actor).is_some() {
                        return Err("forbidden");
                    }
                    self.m.live_org(o)?;
                    Ok(())
                })();
                let value = wanted.map(|limit| orgdb::EntitlementValue::Limit { limit });
                let got = self.db.set_entitlement_override(
                    &self.actor(actor),
                    &org_id,
                    "projects",
                    value.as_ref(),
                );
                if let Some(e) = self.agree(op, expected, got)? {
                    let o = o.unwrap();
                    self.m.orgs[o].projects_override = wanted;
                    let org = &self.m.orgs[o];
                    let want = org.projects_override.unwrap_or(project_limit(org.plan));
                    let live = self
                        .m
                        .projs
                        .iter()
                        .filter(|p| p.org == o && p.alive)
                        .count();
                    ensure!(
                        e.limit == want && e.used == Some(live as u64),
                        "{op:?}: entitlement {e:?}, model limit {want:?}, {live} projects"
                    );
                }
            }
            Op::SetPlan { actor, org, plan } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let expected = (|| {
                    self.m.authorize(actor, o, OWNER)?;
                    if plan >= 2 {
                        return Err("validation_error");
                    }
                    Ok(())
                })();
                let got = self.db.set_plan(&self.actor(actor), &org_id, PLANS[plan]);
                if let Some(updated) = self.agree(op, expected, got)? {
                    ensure!(updated.plan == PLANS[plan], "{op:?}: returned {updated:?}");
                    self.m.orgs[o.unwrap()].plan = PLANS[plan];
                }
            }
            Op::DeleteOrg { actor, org } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let expected = self.m.authorize(actor, o, OWNER).map(|_| ());
                let got = self.db.delete_organization(&self.actor(actor), &org_id);
                if self.agree(op, expected, got)?.is_some() {
                    let o = o.unwrap();
                    self.m.orgs[o].alive = false;
                    self.m.orgs[o].members.clear();
                    self.m.orgs[o].usage.clear();
                    for r in self.m.res.iter_mut().filter(|r| r.org == o) {
                        r.live = false;
                    }
                    for p in self.m.projs.iter_mut().filter(|p| p.org == o) {
                        p.alive = false;
                        p.members.clear();
                    }
                    for inv in self.m.invs.iter_mut().filter(|i| i.org == o) {
                        inv.gone = true;
                    }
                }
            }
            Op::DeleteUser { user } => {
                let uid = self.m.users[user].id.clone();
                let expected = if !self.m.users[user].alive {
                    Err("not_found")
                } else if (0..self.m.orgs.len()).any(|o| {
                    self.m.orgs[o]
                        .members
                        .get(&uid)
                        .is_some_and(|m| self.m.last_owner(o, m))
                }) {
                    Err("conflict")
                } else {
                    Ok(())
                };
                let got = self.db.delete_user(&uid);
                if self.agree(op, expected, got)?.is_some() {
                    for o in 0..self.m.orgs.len() {
                        self.m.remove_member(o, &uid);
                    }
                    self.m.users[user].alive = false;
                }
            }
            Op::RegisterResource {
                actor,
                org,
                api_key,
            } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let kind = if api_key {
                    ResourceKind::ApiKey
                } else {
                    ResourceKind::Mcp
                };
                let expected = (|| {
                    self.m.authorize(actor, o, ADMIN)?;
                    let o = o.unwrap();
                    let (mcps, keys, _) = usage_limits(self.m.orgs[o].plan);
                    let limit = if api_key { keys } else { mcps };
                    if self.m.live_resources(o, Some(kind)) >= limit {
                        return Err("quota_exceeded");
                    }
                    Ok(())
                })();
                let name = format!("res {}", self.m.res.len());
                let got = self
                    .db
                    .register_resource(&self.actor(actor), &org_id, kind, &name);
                if let Some(r) = self.agree(op, expected, got)? {
                    ensure!(r.kind == kind, "{op:?}: returned {r:?}");
                    self.m.res.push(MRes {
                        id: r.id,
                        org: o.unwrap(),
                        kind,
                        live: true,
                    });
                }
            }
            Op::RemoveResource { actor, org, res } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let (r, res_id) = self.res_sel(o, res, false);
                let expected = (|| {
                    self.m.authorize(actor, o, ADMIN)?;
                    self.m.live_res_in(r, o)?;
                    Ok(())
                })();
                let got = self
                    .db
                    .remove_resource(&self.actor(actor), &org_id, &res_id);
                if self.agree(op, expected, got)?.is_some() {
                    self.m.res[r.unwrap()].live = false;
                }
            }
            Op::RecordUsage {
                org,
                ref event,
                recorder,
            } => {
                let (o, org_id) = self.org_sel(org);
                let (r, res_id) = match event.res {
                    Some(sel) => {
                        let (r, id) = self.res_sel(o, sel, true);
                        (Some(r), Some(id))
                    }
                    None => (None, None),
                };
                let key = event.key.map(|k| self.key_for(o, k));
                let month = month_of(self.m.now);
                let mut dup = false;
                let expected = (|| {
                    if let Some(r) = r {
                        self.m.live_res_in(r, o)?;
                    }
                    let o = self.m.live_org(o)?;
                    if key.as_ref().is_some_and(|k| k.1) {
                        dup = true;
                        return Ok(());
                    }
                    let used = self.m.used(o);
                    if used + event.count > usage_limits(self.m.orgs[o].plan).2 {
                        return Err("quota_exceeded");
                    }
                    Ok(())
                })();
                let mut ev = UsageEvent::new(event.count);
                ev.resource_id = res_id;
                ev.idempotency_key = key.as_ref().map(|k| k.0.clone());
                let got = if recorder && ev.idempotency_key.is_none() {
                    self.recorder(&org_id)
                        .and_then(|r| r.record(ev.resource_id.as_deref(), ev.count))
                } else {
                    self.db.record_usage(&org_id, &ev)
                };
                if let Some(receipt) = self.agree(op, expected, got)? {
                    let o = o.unwrap();
                    if !dup {
                        *self.m.orgs[o].usage.entry(month).or_default() += event.count;
                        if let Some(k) = event.key {
                            self.m.orgs[o].keys.get_mut(&k).unwrap().1 = Some(self.m.now);
                        }
                    }
                    ensure!(
                        receipt.duplicate == dup && receipt.used == self.m.used(o),
                        "{op:?}: receipt {receipt:?}, model duplicate {dup} used {}",
                        self.m.used(o)
                    );
                }
            }
            Op::RecordBatch {
                org,
                ref events,
                recorder,
            } => {
                let (o, org_id) = self.org_sel(org);
                let month = month_of(self.m.now);
                let mut evs = Vec::new();
                let mut res = Vec::new();
                let mut keys = Vec::new();
                for e in events {
                    let mut ev = UsageEvent::new(e.count);
                    if let Some(sel) = e.res {
                        let (r, id) = self.res_sel(o, sel, true);
                        res.push(r);
                        ev.resource_id = Some(id);
                    }
                    let key = e.key.map(|k| self.key_for(o, k));
                    ev.idempotency_key = key.as_ref().map(|k| k.0.clone());
                    keys.push(key);
                    evs.push(ev);
                }
                // Which events are duplicates: keys already recorded, or repeated in the batch.
                let mut dups = Vec::new();
                let mut seen: Vec<usize> = Vec::new();
                let mut add = 0;
                for (e, key) in events.iter().zip(&keys) {
                    let dup = match (e.key, key) {
                        (Some(slot), Some((_, known))) => *known || seen.contains(&slot),
                        _ => false,
                    };
                    if let Some(slot) = e.key {
                        seen.push(slot);
                    }
                    if !dup {
                        add += e.count;
                    }
                    dups.push(dup);
                }
                let expected = (|| {
                    for &r in &res {
                        self.m.live_res_in(r, o)?;
                    }
                    let o = self.m.live_org(o)?;
                    if add > 0 && self.m.used(o) + add > usage_limits(self.m.orgs[o].plan).2 {
                        return Err("quota_exceeded");
                    }
                    Ok(())
                })();
                let got = if recorder {
                    let pairs: Vec<(Option<&str>, u64)> = evs
                        .iter()
                        .map(|e| (e.resource_id.as_deref(), e.count))
                        .collect();
                    self.recorder(&org_id)
                        .and_then(|r| r.record_many(&pairs))
                        .map(|receipt| vec![receipt])
                } else {
                    self.db.record_usage_batch(&org_id, &evs)
                };
                if let Some(receipts) = self.agree(op, expected, got)? {
                    let o = o.unwrap();
                    *self.m.orgs[o].usage.entry(month).or_default() += add;
                    for (e, dup) in events.iter().zip(&dups) {
                        if let (Some(k), false) = (e.key, dup) {
                            self.m.orgs[o].keys.get_mut(&k).unwrap().1 = Some(self.m.now);
                        }
                    }
                    let got: Vec<(bool, u64)> =
                        receipts.iter().map(|r| (r.duplicate, r.used)).collect();
                    let want: Vec<(bool, u64)> = if recorder {
                        vec![(false, self.m.used(o))]
                    } else {
                        dups.iter().map(|d| (*d, self.m.used(o))).collect()
                    };
                    ensure!(
                        got == want,
                        "{op:?}: receipts (duplicate, used) {got:?}, model {want:?}"
                    );
                }
            }
            Op::CheckQuota { org, count } => {
                let (o, org_id) = self.org_sel(org);
                let expected = (|| {
                    let o = self.m.live_org(o)?;
                    if self.m.used(o) + count > usage_limits(self.m.orgs[o].plan).2 {
                        return Err("quota_exceeded");
                    }
                    Ok(())
                })();
                let got = self.db.check_quota(&org_id, count);
                if let Some(receipt) = self.agree(op, expected, got)? {
                    let want = self.m.used(o.unwrap()) + count;
                    ensure!(
                        !receipt.duplicate && receipt.used == want,
                        "{op:?}: receipt {receipt:?}, model used after {want}"
                    );
                }
            }
            Op::CreateProject { actor, org } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let expected = (|| {
                    self.m.authorize(actor, o, ADMIN)?;
                    let o = o.unwrap();
                    let live = self
                        .m
                        .projs
                        .iter()
                        .filter(|p| p.org == o && p.alive)
                        .count();
                    let org = &self.m.orgs[o];
                    match org.projects_override.unwrap_or(project_limit(org.plan)) {
                        Some(limit) if live as u64 >= limit => Err("quota_exceeded"),
                        _ => Ok(()),
                    }
                })();
                let got = self.db.create_project(
                    &self.actor(actor),
                    &org_id,
                    &NewProject {
                        name: format!("Project {}", self.m.projs.len()),
                        description: None,
                    },
                );
                if let Some(p) = self.agree(op, expected, got)? {
                    self.m.projs.push(MProj {
                        id: p.id,
                        org: o.unwrap(),
                        alive: true,
                        members: BTreeSet::new(),
                    });
                }
            }
            Op::DeleteProject { actor, org, proj } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let (p, proj_id) = self.proj_sel(o, proj);
                let expected = (|| {
                    self.m.authorize(actor, o, ADMIN)?;
                    self.m.live_proj_in(p, o)?;
                    Ok(())
                })();
                let got = self
                    .db
                    .delete_project(&self.actor(actor), &org_id, &proj_id);
                if self.agree(op, expected, got)?.is_some() {
                    let p = &mut self.m.projs[p.unwrap()];
                    p.alive = false;
                    p.members.clear();
                }
            }
            Op::AddProjectMember {
                actor,
                org,
                proj,
                user,
                role,
            } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let (p, proj_id) = self.proj_sel(o, proj);
                let uid = self.pick_member(user, o);
                let expected = (|| {
                    let rank = self.m.authorize(actor, o, ADMIN)?;
                    if !may_grant(rank, role as Rank) {
                        return Err("forbidden");
                    }
                    let p = self.m.live_proj_in(p, o)?;
                    if !self.m.orgs[o.unwrap()].members.contains_key(&uid) {
                        return Err("not_found");
                    }
                    if self.m.projs[p].members.contains(&uid) {
                        return Err("conflict");
                    }
                    Ok(())
                })();
                let got = self.db.add_project_member(
                    &self.actor(actor),
                    &org_id,
                    &proj_id,
                    &uid,
                    Some(PROJECT_ROLES[role].into()),
                );
                if let Some(pm) = self.agree(op, expected, got)? {
                    ensure!(
                        pm.id == uid && pm.role.as_str() == PROJECT_ROLES[role],
                        "{op:?}: returned {pm:?}"
                    );
                    self.m.projs[p.unwrap()].members.insert(uid);
                }
            }
            Op::RemoveProjectMember {
                actor,
                org,
                proj,
                user,
            } => {
                let (o, org_id) = self.org_sel(org);
                let actor = self.pick_actor(actor, o);
                let (p, proj_id) = self.proj_sel(o, proj);
                let uid = self.pick_member(user, o);
                let expected = (|| {
                    self.m.authorize(actor, o, ADMIN)?;
                    let p = self.m.live_proj_in(p, o)?;
                    if !self.m.projs[p].members.contains(&uid) {
                        return Err("not_found");
                    }
                    Ok(())
                })();
                let got =
                    self.db
                        .remove_project_member(&self.actor(actor), &org_id, &proj_id, &uid);
                if self.agree(op, expected, got)?.is_some() {
                    self.m.projs[p.unwrap()].members.remove(&uid);
                }
            }
        }
        Ok(())
    }

    /// Every page of organization `o`'s `list_members` under `status`, in pages of 3 (offsets
    /// seek through the counted indexes); each page must report `total` rows.
    fn member_pages(
        &self,
        o: usize,
        status: Option<&str>,
        total: u64,
    ) -> Result<Vec<MemberRow>, String> {
        let mut rows = Vec::new();
        for page in 1u32.. {
            let p = self
                .db
                .list_members(
                    &Actor::System,
                    &self.m.orgs[o].id,
                    &MemberQuery {
                        page: Some(page),
                        per_page: Some(3),
                        status: status.map(str::to_owned),
                        ..Default::default()
                    },
                )
                .map_err(|e| format!("list_members of org {o} status {status:?}: {e:?}"))?;
            ensure!(
                p.pagination.total == total,
                "org {o} status {status:?}: total {} but the model has {total} members",
                p.pagination.total
            );
            let last = u64::from(page) >= p.pagination.total_pages;
            rows.extend(p.data.iter().map(row_of));
            if last {
                break;
            }
        }
        Ok(rows)
    }

    /// Organization `o`'s `list_members` under `status` searching `needle`, every offset page
    /// of 2, checking the total on each.
    fn member_search(
        &self,
        o: usize,
        status: &str,
        needle: &str,
        total: u64,
    ) -> Result<Vec<MemberRow>, String> {
        let mut rows = Vec::new();
        for page in 1..=(USERS as u32 + 1) {
            let p = self
                .db
                .list_members(
                    &Actor::System,
                    &self.m.orgs[o].id,
                    &MemberQuery {
                        page: Some(page),
                        per_page: Some(2),
                        status: Some(status.to_owned()),
                        search: Some(needle.to_owned()),
                        ..Default::default()
                    },
                )
                .map_err(|e| format!("search {needle:?} in org {o}: {e:?}"))?;
            ensure!(
                p.pagination.total == total,
                "org {o} search {needle:?} status {status}: total {} but the model finds {total}",
                p.pagination.total
            );
            rows.extend(p.data.iter().map(row_of));
            if u64::from(page) >= p.pagination.total_pages {
                break;
            }
        }
        Ok(rows)
    }

    /// Organization `o`'s `list_members` under `status`, following `next_cursor` in pages of
    /// 2 until it ends.
    fn member_cursor_walk(&self, o: usize, status: &str) -> Result<Vec<MemberRow>, String> {
        let mut rows = Vec::new();
        let mut cursor = None;
        for _ in 0..=USERS {
            let p = self
                .db
                .list_members(
                    &Actor::System,
                    &self.m.orgs[o].id,
                    &MemberQuery {
                        per_page: Some(2),
                        status: Some(status.to_owned()),
                        cursor: cursor.take(),
                        ..Default::default()
                    },
                )
                .map_err(|e| format!("list_members of org {o} by cursor: {e:?}"))?;
            rows.extend(p.data.iter().map(row_of));
            match p.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(rows),
            }
        }
        Err(format!("org {o}: the cursor walk of {status} does not end"))
    }

    /// Compares everything observable with the model.
    fn compare(&self) -> Result<(), String> {
        let system = Actor::System;
        for (o, org) in self.m.orgs.iter().enumerate() {
            if !org.alive {
                let got = self.db.get_organization(&system, &org.id);
                ensure!(
                    got.as_ref().is_err_and(|e| e.code() == "not_found"),
                    "deleted org {o} still readable: {got:?}"
                );
                continue;
            }
            // Members under each status filter, all pages, in order: active members by join
            // time (the default), deactivated ones by join time, and both, active first.
            let by_join = |active: bool| {
                let mut v: Vec<(&String, &MMember)> = org
                    .members
                    .iter()
                    .filter(|(_, m)| m.active() == active)
                    .collect();
                v.sort_by_key(|&(u, m)| (m.joined, u));
                v.into_iter()
                    .map(|(u, m)| member_row(u, m))
                    .collect::<Vec<_>>()
            };
            let (active, deactivated) = (by_join(true), by_join(false));
            let all: Vec<MemberRow> = active.iter().chain(&deactivated).cloned().collect();
            // The default filter and `active` spelled out, on alternate steps.
            let default = [None, Some(" Active")][self.step % 2];
            for (status, want) in [
                (default, &active),
                (Some("deactivated"), &deactivated),
                (Some("ALL"), &all),
            ] {
                let got = self.member_pages(o, status, want.len() as u64)?;
                ensure!(
                    &got == want,
                    "org {o} status {status:?}: members differ\n  db:    {got:?}\n  model: {want:?}"
                );
            }
            // With deactivated members, the whole list again through keyset cursors (pages of
            // 2, across the boundary between the active and the deactivated part).
            if !deactivated.is_empty() {
                let got = self.member_cursor_walk(o, "all")?;
                ensure!(
                    got == all,
                    "org {o}: members by cursor differ\n  db:    {got:?}\n  model: {all:?}"
                );
            }

            // Member search, under each status filter: the members whose email, whole name
            // ("User N") or a later word of it ("N") starts with the prefix, case-insensitively,
            // in list order, by offset pages of 2 (a prefix per step, in turn).
            let needle = SEARCHES[self.step % SEARCHES.len()];
            let lowered = needle.trim().to_lowercase();
            let found = |uid: &str| {
                self.m
                    .users
                    .iter()
                    .position(|u| u.id == uid)
                    .is_some_and(|slot| {
                        [email_of(slot), format!("user {slot}"), slot.to_string()]
                            .iter()
                            .any(|term| term.starts_with(&lowered))
                    })
            };
            for (status, rows) in [
                ("active", &active),
                ("deactivated", &deactivated),
                ("all", &all),
            ] {
                let want: Vec<MemberRow> = rows.iter().filter(|r| found(&r.0)).cloned().collect();
                let got = self.member_search(o, status, needle, want.len() as u64)?;
                ensure!(
                    got == want,
                    "org {o} search {needle:?} status {status}: members differ\n  db:    {got:?}\n  model: {want:?}"
                );
            }

            // What each member may do here: a deactivated one is refused like a non-member.
            for (uid, m) in &org.members {
                let got = self.db.permissions(&Actor::user(uid), &org.id);
                if !m.active() {
                    ensure!(
                        got.as_ref().is_err_and(|e| e.code() == "forbidden"),
                        "deactivated member {uid} of org {o}: permissions gives {got:?}"
                    );
                    continue;
                }
                let p = got.map_err(|e| format!("permissions of {uid} in org {o}: {e:?}"))?;
                let may_leave = !self.m.last_owner(o, m);
                ensure!(
                    p.role.is_some_and(|r| same_role(r, m.role))
                        && p.allows(Action::LeaveOrganization) == may_leave
                        && p.allows(Action::RemoveMember) == (m.role >= ADMIN),
                    "member {uid} of org {o}: permissions {p:?}, model {m:?} (may leave: {may_leave})"
                );
            }

            // Seats, limit and plan.
            let details = self
                .db
                .get_organization(&system, &org.id)
                .map_err(|e| format!("get_organization {o}: {e:?}"))?;
            ensure!(
                details.usage.team_members == self.m.seats(o),
                "org {o}: usage.team_members {} but the model counts {} seats",
                details.usage.team_members,
                self.m.seats(o)
            );
            ensure!(
                details.limits.team_members == Some(seat_limit(org.plan))
                    && details.organization.plan == org.plan,
                "org {o}: plan {} / limit {:?}, model {}",
                details.organization.plan,
                details.limits.team_members,
                org.plan
            );

            // Usage, resources and projects.
            let (mcps, api_keys) = (
                self.m.live_resources(o, Some(ResourceKind::Mcp)),
                self.m.live_resources(o, Some(ResourceKind::ApiKey)),
            );
            let got = (
                details.usage.monthly_requests,
                details.usage.mcps,
                details.usage.api_keys,
            );
            let want = (self.m.used(o), mcps, api_keys);
            ensure!(
                got == want,
                "org {o}: usage (monthly_requests, mcps, api_keys) {got:?}, model {want:?}"
            );
            let mut got: Vec<String> = self
                .db
                .list_resources(&system, &org.id, None)
                .map_err(|e| format!("list_resources {o}: {e:?}"))?
                .into_iter()
                .map(|r| r.id)
                .collect();
            got.sort();
            let want: Vec<String> = self
                .m
                .res
                .iter()
                .filter(|r| r.org == o && r.live)
                .map(|r| r.id.clone())
                .collect();
            let mut want_sorted = want.clone();
            want_sorted.sort();
            ensure!(
                got == want_sorted,
                "org {o}: resources differ\n  db:    {got:?}\n  model: {want_sorted:?}"
            );
            let mut got: Vec<String> = self
                .db
                .list_projects(&system, &org.id)
                .map_err(|e| format!("list_projects {o}: {e:?}"))?
                .into_iter()
                .map(|p| p.id)
                .collect();
            got.sort();
            let mut want: Vec<String> = self
                .m
                .projs
                .iter()
                .filter(|p| p.org == o && p.alive)
                .map(|p| p.id.clone())
                .collect();
            want.sort();
            ensure!(
                got == want,
                "org {o}: projects differ\n  db:    {got:?}\n  model: {want:?}"
            );
            for p in self.m.projs.iter().filter(|p| p.org == o && p.alive) {
                let got: BTreeSet<String> = self
                    .db
                    .list_project_members(&system, &org.id, &p.id)
                    .map_err(|e| format!("list_project_members {}: {e:?}", p.id))?
                    .into_iter()
                    .map(|m| m.id)
                    .collect();
                ensure!(
                    got == p.members,
                    "org {o} project {}: members differ\n  db:    {got:?}\n  model: {:?}",
                    p.id,
                    p.members
                );
            }

            // Invitation statuses.
            let listed = self
                .db
                .list_invitations(
                    &system,
                    &org.id,
                    &InvitationQuery {
                        per_page: Some(100),
                        ..Default::default()
                    },
                )
                .map_err(|e| format!("list_invitations {o}: {e:?}"))?;
            let got: BTreeMap<String, InvitationStatus> = listed
                .data
                .iter()
                .map(|i| (i.id.clone(), i.status))
                .collect();
            let want: BTreeMap<String, InvitationStatus> = self
                .m
                .invs
                .iter()
                .filter(|i| i.org == o)
                .map(|i| (i.id.clone(), self.m.status(i)))
                .collect();
            ensure!(
                got == want,
                "org {o}: invitations differ\n  db:    {got:?}\n  model: {want:?}"
            );
            // Each status filter, in pages of 3 (offset seeks through the counted indexes,
            // and the walks that split stored-pending entries by their expiry), oldest first.
            for status in [
                None,
                Some(InvitationStatus::Pending),
                Some(InvitationStatus::Accepted),
                Some(InvitationStatus::Declined),
                Some(InvitationStatus::Revoked),
                Some(InvitationStatus::Expired),
            ] {
                let want: Vec<&String> = want
                    .iter()
                    .filter(|(_, s)| status.is_none_or(|f| f == **s))
                    .map(|(id, _)| id)
                    .collect();
                let mut got = Vec::new();
                for page in 1..=want.len().div_ceil(3).max(1) as u32 {
                    let listed = self
                        .db
                        .list_invitations(
                            &system,
                            &org.id,
                            &InvitationQuery {
                                status: status.map(|s| s.as_str().to_owned()),
                                page: Some(page),
                                per_page: Some(3),
                            },
                        )
                        .map_err(|e| format!("list_invitations {o} {status:?}: {e:?}"))?;
                    ensure!(
                        listed.pagination.total == want.len() as u64,
                        "org {o} {status:?}: total {} but {} match",
                        listed.pagination.total,
                        want.len()
                    );
                    got.extend(listed.data.into_iter().map(|i| i.id));
                }
                ensure!(
                    got.iter().collect::<Vec<_>>() == want,
                    "org {o} {status:?}: pages differ\n  db:    {got:?}\n  model: {want:?}"
                );
            }
        }

        // Each user's organizations.
        for (slot, u) in self.m.users.iter().enumerate() {
            let got = self.db.list_organizations_for_user(&u.id);
            if !u.alive {
                ensure!(
                    got.as_ref().is_err_and(|e| e.code() == "not_found"),
                    "deleted user {slot} still listed: {got:?}"
                );
                continue;
            }
            let got: BTreeSet<(String, String, &str)> = got
                .map_err(|e| format!("list_organizations_for_user {slot}: {e:?}"))?
                .into_iter()
                .map(|o| {
                    (
                        o.organization.id,
                        o.membership.role.as_str().to_owned(),
                        o.membership.status.as_str(),
                    )
                })
                .collect();
            let want: BTreeSet<(String, String, &str)> = self
                .m
                .orgs
                .iter()
                .filter(|o| o.alive)
                .filter_map(|o| {
                    o.members.get(&u.id).map(|m| {
                        (
                            o.id.clone(),
                            rank_name(m.role).to_owned(),
                            m.status().as_str(),
                        )
                    })
                })
                .collect();
            ensure!(
                got == want,
                "user {slot}: organizations differ\n  db:    {got:?}\n  model: {want:?}"
            );
        }

        let report = self.db.check().map_err(|e| format!("check: {e:?}"))?;
        ensure!(report.is_ok(), "check failed: {:#?}", report.problems);
        Ok(())
    }
}

/// Runs a sequence, comparing after every operation.
fn run(ops: &[Op]) -> Result<(), String> {
    let mut r = Run::new();
    for op in ops {
        r.run_one(op)?;
    }
    Ok(())
}

impl Run {
    /// Runs one operation and compares the state after it.
    fn run_one(&mut self, op: &Op) -> Result<(), String> {
        self.step += 1;
        self.apply(op)
            .and_then(|()| self.compare())
            .map_err(|e| format!("after op #{} {op:?}:\n{e}", self.step))
    }
}

/// Runs a sequence like [`run`], where each operation must also have the outcome given with
/// it (Ok, or an error code); returns the run for checks of the final state.
fn run_expecting(steps: &[(Op, Expect)]) -> Run {
    let mut r = Run::new();
    for (op, want) in steps {
        r.run_one(op).unwrap();
        assert_eq!(r.outcome, *want, "op #{} {op:?}", r.step);
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Generators.

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    // A user slot, the system, or (resolved at run time) an owner or admin of the org.
    let actor = prop_oneof![5 => 0..USERS, 1 => Just(USERS), 3 => Just(OWNER_OF_ORG), 2 => Just(ADMIN_OF_ORG)];
    let org = prop_oneof![6 => Just(0usize), 3 => Just(1usize), 1 => Just(2usize)];
    let role = 0..ROLE_STRS.len();
    // A deactivation's target: a user slot, or (resolved at run time) a member of the org;
    // and its actor, more often one who may do it.
    let target = prop_oneof![1 => 0..USERS, 2 => USERS..2 * USERS];
    let manager = prop_oneof![2 => 0..USERS, 1 => Just(USERS), 4 => Just(OWNER_OF_ORG), 3 => Just(ADMIN_OF_ORG)];
    prop_oneof![
        2 => user.clone().prop_map(|user| Op::CreateUser { user }),
        2 => (user.clone(), prop_oneof![3 => 0..2usize, 1 => Just(2usize)])
            .prop_map(|(owner, plan)| Op::CreateOrg { owner, plan }),
        7 => (actor.clone(), org.clone(), user.clone(), role.clone())
            .prop_map(|(actor, org, user, role)| Op::AddMember { actor, org, user, role }),
        5 => (actor.clone(), org.clone(), user.clone(), any::<bool>(), role.clone()).prop_map(
            |(actor, org, target, by_membership, role)| Op::UpdateRole {
                actor,
                org,
                target,
                by_membership,
                role
            }
        ),
        3 => (actor.clone(), org.clone(), user.clone(), any::<bool>()).prop_map(
            |(actor, org, target, by_membership)| Op::RemoveMember {
                actor,
                org,
                target,
                by_membership
            }
        ),
        5 => (manager.clone(), org.clone(), target.clone(), any::<bool>()).prop_map(
            |(actor, org, target, by_membership)| Op::Deactivate {
                actor,
                org,
                target,
                by_membership
            }
        ),
        3 => (manager, org.clone(), target, any::<bool>()).prop_map(
            |(actor, org, target, by_membership)| Op::Reactivate {
                actor,
                org,
                target,
                by_membership
            }
        ),
        2 => (user.clone(), org.clone()).prop_map(|(user, org)| Op::Leave { user, org }),
        3 => (actor.clone(), org.clone(), user.clone())
            .prop_map(|(actor, org, to)| Op::Transfer { actor, org, to }),
        8 => (actor.clone(), org.clone(), 0..7usize, any::<bool>(), role.clone()).prop_map(
            |(actor, org, email, shout, role)| Op::Invite {
                actor,
                org,
                email,
                shout,
                role
            }
        ),
        8 => (
            0..16usize,
            prop_oneof![3 => Just(None), 1 => user.clone().prop_map(Some)],
            prop::bool::weighted(0.15)
        )
            .prop_map(|(inv, user, stale)| Op::Accept { inv, user, stale }),
        2 => (0..16usize).prop_map(|inv| Op::Decline { inv }),
        2 => (actor.clone(), prop::option::weighted(0.2, org.clone()), 0..16usize)
            .prop_map(|(actor, org, inv)| Op::Revoke { actor, org, inv }),
        2 => (actor.clone(), prop::option::weighted(0.2, org.clone()), 0..16usize)
            .prop_map(|(actor, org, inv)| Op::Resend { actor, org, inv }),
        4 => (0..STEPS.len()).prop_map(|step| Op::Advance { step }),
        2 => (actor.clone(), org.clone(), prop_oneof![4 => 0..2usize, 1 => Just(2usize)])
            .prop_map(|(actor, org, plan)| Op::SetPlan { actor, org, plan }),
        1 => (actor.clone(), org.clone()).prop_map(|(actor, org)| Op::DeleteOrg { actor, org }),
        2 => (prop_oneof![3 => Just(USERS), 1 => actor.clone()], org.clone(), 0..PROJECT_OVERRIDES.len())
            .prop_map(|(actor, org, limit)| Op::SetProjectLimit { actor, org, limit }),
        1 => user.prop_map(|user| Op::DeleteUser { user }),
        4 => (actor.clone(), org.clone(), any::<bool>())
            .prop_map(|(actor, org, api_key)| Op::RegisterResource { actor, org, api_key }),
        2 => (actor.clone(), org.clone(), res_sel())
            .prop_map(|(actor, org, res)| Op::RemoveResource { actor, org, res }),
        9 => (org.clone(), ev(0.5), any::<bool>())
            .prop_map(|(org, mut event, recorder)| {
                if recorder {
                    event.key = None;
                }
                Op::RecordUsage { org, event, recorder }
            }),
        4 => (org.clone(), prop::collection::vec(ev(0.2), 2..=5), any::<bool>())
            .prop_map(|(org, mut events, recorder)| {
                if recorder {
                    for e in &mut events {
                        e.key = None;
                    }
                }
                Op::RecordBatch { org, events, recorder }
            }),
        2 => (org.clone(), 1..1200u64).prop_map(|(org, count)| Op::CheckQuota { org, count }),
        3 => (actor.clone(), org.clone())
            .prop_map(|(actor, org)| Op::CreateProject { actor, org }),
        1 => (actor.clone(), org.clone(), 0..20usize)
            .prop_map(|(actor, org, proj)| Op::DeleteProject { actor, org, proj }),
        6 => (actor.clone(), org.clone(), 0..20usize, 0..2 * USERS, 0..PROJECT_ROLES.len()).prop_map(
            |(actor, org, proj, user, role)| Op::AddProjectMember {
                actor,
                org,
                proj,
                user,
                role
            }
        ),
        3 => (actor, org, 0..20usize, 0..2 * USERS).prop_map(|(actor, org, proj, user)| {
            Op::RemoveProjectMember {
                actor,
                org,
                proj,
                user,
            }
        }),
    ]
}

fn res_sel() -> impl Strategy<Value = ResSel> {
    (prop::bool::weighted(0.8), 0..8usize).prop_map(|(own, idx)| ResSel { own, idx })
}

/// A usage event naming a resource with probability `with_res`.
fn ev(with_res: f64) -> impl Strategy<Value = Ev> {
    (
        1..400u64,
        prop::option::weighted(with_res, res_sel()),
        prop::option::weighted(0.6, 0..KEY_POOL),
    )
        .prop_map(|(count, res, key)| Ev { count, res, key })
}

/// Sequences start with a free organization owned by user 0 and a pro one owned by user 1,
/// each with a project and a resource, and up to three more members (users 2–4 added by the
/// system as viewer, member or admin), so early operations have targets: without them most
/// organizations would only ever hold their owner, whom nothing but a transfer can deactivate.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    let seeded = (0..2usize, 2..USERS, 0..3usize).prop_map(|(org, user, role)| Op::AddMember {
        actor: USERS,
        org,
        user,
        role,
    });
    (
        prop::collection::vec(seeded, 0..=3),
        prop::collection::vec(op(), 1..60),
    )
        .prop_map(|(seeded, mut ops)| {
            let setup = [
                Op::CreateOrg { owner: 0, plan: 0 },
                Op::CreateOrg { owner: 1, plan: 1 },
                Op::CreateProject {
                    actor: OWNER_OF_ORG,
                    org: 0,
                },
                Op::CreateProject {
                    actor: OWNER_OF_ORG,
                    org: 1,
                },
                Op::RegisterResource {
                    actor: OWNER_OF_ORG,
                    org: 0,
                    api_key: false,
                },
                Op::RegisterResource {
                    actor: OWNER_OF_ORG,
                    org: 1,
                    api_key: true,
                },
            ];
            ops.splice(0..0, setup.into_iter().chain(seeded));
            ops
        })
}

proptest! {
    #![proptest_config(Config {
        // Each case is hundreds of transactions: a quarter as many on a server.
        // `PROPTEST_CASES` asks for more (or fewer) for a longer shake-out.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(if common::on_postgres() { 32 } else { 128 }),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/proptest-regressions/model.txt"))),
        ..Config::default()
    })]

    #[test]
    fn db_agrees_with_the_model(ops in ops()) {
        run(&ops).map_err(TestCaseError::fail)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Plain sequences: the model run on a few hand-picked paths.

#[test]
fn model_smoke_fill_expire_and_reinvite() {
    use Op::*;
    run(&[
        CreateOrg { owner: 0, plan: 0 },
        AddMember {
            actor: 0,
            org: 0,
            user: 1,
            role: 4,
        },
        Invite {
            actor: 1,
            org: 0,
            email: 2,
            shout: true,
            role: 1,
        },
        // Full: 2 members + 1 pending on free.
        Invite {
            actor: 0,
            org: 0,
            email: 3,
            shout: false,
            role: 1,
        },
        Advance { step: 4 },
        // Expired: the seat is free again, and the email may be invited again.
        Invite {
            actor: 0,
            org: 0,
            email: 2,
            shout: false,
            role: 0,
        },
        Accept {
            inv: 0,
            user: None,
            stale: false,
        },
        Accept {
            inv: 1,
            user: None,
            stale: false,
        },
        Transfer {
            actor: 0,
            org: 0,
            to: 2,
        },
        Leave { user: 0, org: 0 },
        Leave { user: 2, org: 0 },
    ])
    .unwrap();
}

#[test]
fn model_smoke_accept_after_downgrade() {
    use Op::*;
    let invite = |email| Invite {
        actor: OWNER_OF_ORG,
        org: 0,
        email,
        shout: false,
        role: 1,
    };
    let accept = |inv| Accept {
        inv,
        user: None,
        stale: false,
    };
    run(&[
        CreateOrg { owner: 0, plan: 1 },
        invite(1),
        invite(2),
        invite(3),
        invite(4),
        // 1 member + 4 pending = 5 seats: full on pro.
        invite(5),
        // Down to free (3): nothing is deleted, additions are refused.
        SetPlan {
            actor: OWNER_OF_ORG,
            org: 0,
            plan: 0,
        },
        accept(3),
        accept(2),
        // 3 members: the third invitee does not fit and stays pending.
        accept(1),
        Advance { step: 4 },
        accept(1),
        Revoke {
            actor: ADMIN_OF_ORG,
            org: None,
            inv: 1,
        },
        Decline { inv: 0 },
    ])
    .unwrap();
}

/// Deactivation frees a seat that an invitation may then take; reactivation needs a seat
/// again (refused while the organization is full, fine once someone is removed), keeps the
/// role and the join time, and the reactivated member counts again when an invitation is
/// accepted.
#[test]
fn model_smoke_deactivate_frees_a_seat_and_reactivation_needs_one() {
    use Op::*;
    const SYSTEM: usize = USERS;
    let r = run_expecting(&[
        (CreateOrg { owner: 0, plan: 0 }, Ok(())),
        (
            AddMember {
                actor: 0,
                org: 0,
                user: 1,
                role: 2,
            },
            Ok(()),
        ),
        (
            AddMember {
                actor: 1,
                org: 0,
                user: 2,
                role: 1,
            },
            Ok(()),
        ),
        // Three members: full on free.
        (
            Invite {
                actor: 0,
                org: 0,
                email: 3,
                shout: false,
                role: 1,
            },
            Err("quota_exceeded"),
        ),
        // The admin deactivates the member (by membership id): their seat is free.
        (
            Deactivate {
                actor: ADMIN_OF_ORG,
                org: 0,
                target: 2,
                by_membership: true,
            },
            Ok(()),
        ),
        // Again: nothing changes, nothing is audited.
        (
            Deactivate {
                actor: SYSTEM,
                org: 0,
                target: 2,
                by_membership: false,
            },
            Ok(()),
        ),
        (
            Invite {
                actor: 1,
                org: 0,
                email: 3,
                shout: true,
                role: 0,
            },
            Ok(()),
        ),
        // Two active members and a pending invitation: no seat to come back to.
        (
            Reactivate {
                actor: OWNER_OF_ORG,
                org: 0,
                target: 2,
                by_membership: false,
            },
            Err("quota_exceeded"),
        ),
        (Leave { user: 2, org: 0 }, Err("forbidden")),
        (
            RemoveMember {
                actor: 0,
                org: 0,
                target: 1,
                by_membership: false,
            },
            Ok(()),
        ),
        (
            Reactivate {
                actor: 0,
                org: 0,
                target: 2,
                by_membership: true,
            },
            Ok(()),
        ),
        // Two active members plus the invitee: the accept fits exactly.
        (
            Accept {
                inv: 0,
                user: None,
                stale: false,
            },
            Ok(()),
        ),
        (
            Invite {
                actor: 0,
                org: 0,
                email: 4,
                shout: false,
                role: 1,
            },
            Err("quota_exceeded"),
        ),
    ]);
    let org = &r.m.orgs[0];
    assert_eq!(r.m.seats(0), 3);
    assert!(org.members.values().all(MMember::active), "{org:?}");
    let back = &org.members[&r.m.users[2].id];
    assert_eq!((back.role, back.joined), (1, common::start()), "{back:?}");
}

/// A deactivated member cannot act (like a non-member), cannot be changed but by
/// reactivation or removal, and does not count as an owner; an admin never deactivates or
/// reactivates an owner; a retried accept of their invitation returns the deactivated
/// membership.
#[test]
fn model_smoke_a_deactivated_member_cannot_act() {
    use Op::*;
    const SYSTEM: usize = USERS;
    let deactivate = |actor, target| Deactivate {
        actor,
        org: 0,
        target,
        by_membership: false,
    };
    let reactivate = |actor, target| Reactivate {
        actor,
        org: 0,
        target,
        by_membership: true,
    };
    let update = |actor, target, role| UpdateRole {
        actor,
        org: 0,
        target,
        by_membership: false,
        role,
    };
    let invite = |actor, email| Invite {
        actor,
        org: 0,
        email,
        shout: false,
        role: 1,
    };
    let add = |actor, user| AddMember {
        actor,
        org: 0,
        user,
        role: 1,
    };
    let r = run_expecting(&[
        (CreateOrg { owner: 0, plan: 1 }, Ok(())),
        (
            AddMember {
                actor: 0,
                org: 0,
                user: 1,
                role: 3,
            },
            Ok(()),
        ),
        (
            AddMember {
                actor: 0,
                org: 0,
                user: 2,
                role: 2,
            },
            Ok(()),
        ),
        (CreateProject { actor: 0, org: 0 }, Ok(())),
        (deactivate(2, 1), Err("forbidden")),
        (
            Deactivate {
                actor: 1,
                org: 0,
                target: 0,
                by_membership: true,
            },
            Ok(()),
        ),
        // User 1 is the last active owner now.
        (deactivate(SYSTEM, 1), Err("conflict")),
        (Leave { user: 1, org: 0 }, Err("conflict")),
        (DeleteUser { user: 1 }, Err("conflict")),
        (update(1, 1, 2), Err("conflict")),
        // The deactivated owner cannot act.
        (CreateProject { actor: 0, org: 0 }, Err("forbidden")),
        (
            SetPlan {
                actor: 0,
                org: 0,
                plan: 0,
            },
            Err("forbidden"),
        ),
        (
            Transfer {
                actor: 0,
                org: 0,
                to: 2,
            },
            Err("forbidden"),
        ),
        (invite(0, 3), Err("forbidden")),
        (Leave { user: 0, org: 0 }, Err("forbidden")),
        // Nor be changed: permission and role checks first, then `conflict`.
        (update(1, 0, 0), Err("conflict")),
        (update(1, 0, 3), Err("conflict")),
        (update(1, 0, 7), Err("validation_error")),
        (update(2, 0, 1), Err("forbidden")),
        // They stay a member of the organization: a project may take them.
        (
            AddProjectMember {
                actor: 1,
                org: 0,
                proj: 0,
                user: 0,
                role: 1,
            },
            Ok(()),
        ),
        (
            Transfer {
                actor: 1,
                org: 0,
                to: 0,
            },
            Err("conflict"),
        ),
        (add(1, 0), Err("conflict")),
        (invite(1, 0), Err("conflict")),
        (
            RemoveMember {
                actor: 2,
                org: 0,
                target: 0,
                by_membership: false,
            },
            Err("forbidden"),
        ),
        (reactivate(2, 0), Err("forbidden")),
        // A deactivated admin cannot act either, not even to come back.
        (deactivate(1, 2), Ok(())),
        (CreateProject { actor: 2, org: 0 }, Err("forbidden")),
        (invite(2, 3), Err("forbidden")),
        (reactivate(2, 2), Err("forbidden")),
        (deactivate(2, 1), Err("forbidden")),
        // A retried accept returns the membership as it is, deactivated.
        (invite(1, 3), Ok(())),
        (
            Accept {
                inv: 0,
                user: None,
                stale: false,
            },
            Ok(()),
        ),
        (deactivate(1, 3), Ok(())),
        (
            Accept {
                inv: 0,
                user: None,
                stale: false,
            },
            Ok(()),
        ),
        (invite(1, 3), Err("conflict")),
        (reactivate(1, 0), Ok(())),
        (Leave { user: 1, org: 0 }, Ok(())),
        // Removing a deactivated member works.
        (
            RemoveMember {
                actor: 0,
                org: 0,
                target: 2,
                by_membership: true,
            },
            Ok(()),
        ),
        (reactivate(SYSTEM, 3), Ok(())),
    ]);
    let org = &r.m.orgs[0];
    assert_eq!(org.members.len(), 2, "{org:?}");
    assert!(org.members.values().all(MMember::active), "{org:?}");
    // The project membership given while deactivated survived the reactivation.
    assert!(r.m.projs[0].members.contains(&r.m.users[0].id));
    let bad = r.db.list_members(
        &Actor::System,
        &org.id,
        &MemberQuery {
            status: Some("inactive".into()),
            ..Default::default()
        },
    );
    assert!(
        bad.as_ref()
            .is_err_and(|e| e.code() == "validation_error" && e.details().contains_key("status")),
        "{bad:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Regressions: minimal sequences shrunk from failures of `db_agrees_with_the_model`.

/// Resending an invitation must give it a new expiry of its lifetime (7 days) from now. The
/// second resend below (at the same instant as the first) must give the same expiry, but the
/// crate derives the lifetime as `expires_at - created_at` of the record, which the first
/// resend already stretched by the hour between creation and resend: the expiry grows by that
/// much with every resend.
#[test]
fn regression_resend_twice_keeps_the_invitation_lifetime() {
    use Op::*;
    run(&[
        CreateOrg { owner: 0, plan: 0 },
        Invite {
            actor: 5,
            org: 0,
            email: 1,
            shout: false,
            role: 0,
        },
        Advance { step: 0 },
        Resend {
            actor: 5,
            org: None,
            inv: 0,
        },
        Resend {
            actor: 5,
            org: None,
            inv: 0,
        },
    ])
    .unwrap();
}

/// An expired invitation of a user who then joined directly must not come back as a pending
/// invitation for a current member: SPEC says an invitation for a current member is
/// `conflict` and nobody is ever counted twice, but the resend succeeds and the user then
/// holds two seats (a member and a pending invitation).
#[test]
fn regression_resend_of_expired_invitation_for_a_member() {
    use Op::*;
    run(&[
        CreateOrg { owner: 0, plan: 0 },
        Invite {
            actor: 5,
            org: 0,
            email: 1,
            shout: false,
            role: 0,
        },
        Advance { step: 4 },
        AddMember {
            actor: 5,
            org: 0,
            user: 1,
            role: 0,
        },
        Resend {
            actor: 0,
            org: None,
            inv: 0,
        },
    ])
    .unwrap();
}
