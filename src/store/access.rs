//! The typed interface over a backend transaction: every entity's reads (`Reads`) and
//! writes (`Writes`), written once over the raw `KvRead` / `KvWrite`. Every writer keeps its
//! row's indexes and counters in step.

use chrono::{DateTime, Utc};

use super::counted::{self, counted_ids, entry_id, Paging};
use super::keys::{
    self, day_key, entry_expiry, join_prefix, member_join_key, member_role_key, meta_key,
    period_key, resource_org_key, role_prefix, status_entry, status_prefix, RESOURCE_LIVE,
    RESOURCE_REMOVED,
};
use super::CheckReport;
use super::{
    codec, org_terms, prefix_end, schema, AlertFired, DayRow, Directory, InvitationRecord, Key,
    KeyReader, KvRead, KvWrite, MemberPage, MemberPos, MemberSet, OrgMembers, OrgOverview,
    OrgRecord, OrgStats, ResourceRecord, Span, Stored, Table, UsageAsk, UsageState, UsageWrite,
    UserMembership, Visit,
};
use crate::error::{Error, Result};
use crate::model::audit::AuditEvent;
use crate::model::entitlement::EntitlementValue;
use crate::model::invitation::{Invitation, InvitationStatus};
use crate::model::membership::Membership;
use crate::model::period::QuotaPeriod;
use crate::model::project::{Project, ProjectMembership};
use crate::model::reservation::Reservation;
use crate::model::resource::{Resource, ResourceKind};
use crate::model::role::Role;
use crate::model::transfer::Record;
use crate::model::user::{search_terms, User};

/// The typed reading interface: what every operation reads, on any backend.
pub(crate) trait Reads {
    /// The error that makes the backend run this transaction again from the start (on a
    /// fresh snapshot): something read outside it (this process's unstored lease usage)
    /// moved while it ran. Only a shared backend has such state; the embedded one answers
    /// a plain `storage_error`.
    fn run_again(&self, why: &str) -> Error;

    fn meta_u64(&self, name: &str) -> Result<Option<u64>>;

    // Users.

    fn user(&self, id: &str) -> Result<Option<User>>;

    fn user_id_by_email(&self, email: &str) -> Result<Option<String>>;

    // Organizations.

    fn org(&self, id: &str) -> Result<Option<OrgRecord>>;

    fn org_id_by_slug(&self, slug: &str) -> Result<Option<String>>;

    fn org_id_by_external(&self, external_id: &str) -> Result<Option<String>>;

    fn org_stats(&self, org: &str) -> Result<OrgStats>;

    /// The organization and `user`'s role there (`None`: not a member): what authorizing a
    /// user's action reads (one statement on a SQL backend).
    fn org_with_role(&self, org: &str, user: &str) -> Result<Option<(OrgRecord, Option<Role>)>> {
        match self.org(org)? {
            Some(rec) => Ok(Some((
                rec,
                self.membership(org, user)?.and_then(|m| m.acting_role()),
            ))),
            None => Ok(None),
        }
    }

    /// The organization with its counters, `user`'s role there, its pending unexpired
    /// invitations at `now` and the stored total of the quota period that holds day number
    /// `day` (when asked): one statement on a SQL backend. `None` when the organization does
    /// not exist.
    fn org_overview(
        &self,
        org: &str,
        user: Option<&str>,
        now: DateTime<Utc>,
        day: Option<u32>,
    ) -> Result<Option<OrgOverview>>;

    // Memberships.

    fn membership(&self, org: &str, user: &str) -> Result<Option<Membership>>;

    fn membership_by_id(&self, membership_id: &str) -> Result<Option<Membership>>;

    /// The memberships of one organization's list `page.set` (optionally of one role) with
    /// their users, in list order, starting strictly after `page.after`, skipping `page.skip`
    /// rows, at most `page.limit` rows: one page of a member list.
    fn member_rows(&self, org: &str, page: &MemberPage<'_>) -> Result<Vec<(Membership, User)>>;

    /// What a member list without a search reads, at once (one statement on a SQL backend):
    /// the organization, `user`'s acting role there (`None`: the system, or not a member)
    /// and [`member_rows`](Reads::member_rows) of `page`. `None` when the organization does
    /// not exist. The page is read before the caller authorizes: it must not reach an actor
    /// who may not see it.
    fn org_with_members(
        &self,
        org: &str,
        user: Option<&str>,
        page: &MemberPage<'_>,
    ) -> Result<Option<OrgMembers>> {
        org_with_members_apart(self, org, user, page)
    }

    /// How many deactivated members the organization has (optionally of one role). Active
    /// members are counted by [`org_stats`](Reads::org_stats).
    fn deactivated_count(&self, org: &str, role: Option<Role>) -> Result<u64>;

    /// A system list (`which`): how many rows it has (or, with a search `prefix`, normalized
    /// and not empty, how many rows a term of which starts with it), and the ids of one page
    /// in id order, after `after`, skipping `skip`, at most `limit`.
    fn directory(
        &self,
        which: Directory,
        prefix: Option<&str>,
        after: Option<&str>,
        skip: u64,
        limit: usize,
    ) -> Result<(u64, Vec<String>)>;

    /// How many organizations `user` owns (active owner memberships).
    fn owned_org_count(&self, user: &str) -> Result<u64> {
        let mut owned = 0;
        for org in self.user_org_ids(user)? {
            let m = self.membership(&org, user)?;
            owned += u64::from(m.is_some_and(|m| m.acting_role() == Some(Role::Owner)));
        }
        Ok(owned)
    }

    /// A member search: how many members of the list `set` (optionally of one role) have a
    /// search term (`model::user::search_terms`) that starts with `prefix` (normalized, not
    /// empty), and one page of them in list order, like [`member_rows`](Reads::member_rows).
    #[allow(clippy::too_many_arguments)]
    fn member_search(
        &self,
        org: &str,
        set: MemberSet,
        role: Option<Role>,
        prefix: &str,
        after: Option<&MemberPos>,
        skip: u64,
        limit: usize,
    ) -> Result<(u64, Vec<(Membership, User)>)>;

    /// Every member's user id (active and deactivated), in list order.
    fn member_user_ids(&self, org: &str) -> Result<Vec<String>>;

    /// The organizations a user belongs to, by id.
    fn user_org_ids(&self, user: &str) -> Result<Vec<String>>;

    // Invitations.

    fn invitation(&self, id: &str) -> Result<Option<InvitationRecord>>;

    /// The invitation whose token has this hash (one statement on a SQL backend).
    fn invitation_by_token_hash(&self, hash: &[u8; 32]) -> Result<Option<InvitationRecord>>;

    /// What accepting reads, at once (one statement on a SQL backend): the invitation whose
    /// token has this hash and, if `user` exists, the user with their membership of the
    /// invitation's organization, if any.
    fn invitation_with_user(
        &self,
        hash: &[u8; 32],
        user: &str,
    ) -> Result<Option<(InvitationRecord, Option<UserMembership>)>> {
        let Some(rec) = self.invitation_by_token_hash(hash)? else {
            return Ok(None);
        };
        let found = match self.user(user)? {
            Some(u) => Some((u, self.membership(&rec.invitation.organization_id, user)?)),
            None => None,
        };
        Ok(Some((rec, found)))
    }

    /// The invitation stored as pending for (org, email), expired or not.
    fn pending_invitation_id(&self, org: &str, email: &str) -> Result<Option<String>>;

    /// How many pending invitations of an organization have their expiry still ahead of
    /// `now`. Reads the index only: its values carry the expiry.
    fn pending_unexpired_count(&self, org: &str, now: DateTime<Utc>) -> Result<u64>;

    /// Every invitation id of an organization, oldest first.
    fn invitation_ids_of_org(&self, org: &str) -> Result<Vec<String>>;

    /// Ids of the invitations that name `project`.
    fn invitation_ids_of_project(&self, project: &str) -> Result<Vec<String>>;

    /// One page of an organization's invitation ids, oldest first, as of `now`: all of them,
    /// or those whose status (expiry applied) is `status`; and how many match in all.
    ///
    /// All, accepted, declined and revoked seek through their counted index. Pending and
    /// expired also do while no stored-pending invitation has passed its expiry; otherwise
    /// they walk the index entries (never the records), whose values carry the expiry.
    fn invitation_page(
        &self,
        org: &str,
        status: Option<InvitationStatus>,
        now: DateTime<Utc>,
        skip: u64,
        limit: usize,
    ) -> Result<(Vec<String>, u64)>;

    /// Ids of invitations stored as pending for an email, across organizations.
    fn pending_invitation_ids_for_email(&self, email: &str) -> Result<Vec<String>>;

    // Projects.

    fn project(&self, id: &str) -> Result<Option<Project>>;

    fn project_ids_of_org(&self, org: &str) -> Result<Vec<String>>;

    /// How many projects an organization has (the `projects` limit counts them).
    fn project_count(&self, org: &str) -> Result<u64> {
        Ok(self.project_ids_of_org(org)?.len() as u64)
    }

    fn project_membership(&self, project: &str, user: &str) -> Result<Option<ProjectMembership>>;

    fn project_member_ids(&self, project: &str) -> Result<Vec<String>>;

    /// Projects of one organization that a user belongs to.
    fn project_ids_of_member(&self, org: &str, user: &str) -> Result<Vec<String>>;

    // Resources.

    fn resource(&self, id: &str) -> Result<Option<Resource>>;

    fn resource_record(&self, id: &str) -> Result<Option<ResourceRecord>>;

    /// The usage column of resource `id` when it is live (not removed) in `org`: what a usage
    /// event naming it counts in.
    fn live_resource_column(&self, org: &str, id: &str) -> Result<Option<u32>> {
        Ok(self
            .resource_record(id)?
            .filter(|r| r.resource.is_live_in(org))
            .map(|r| r.column))
    }

    /// Resource ids of an organization, of one kind or all, oldest first; removed ones only
    /// when `include_removed`.
    fn resource_ids_of_org(
        &self,
        org: &str,
        kind: Option<ResourceKind>,
        include_removed: bool,
    ) -> Result<Vec<String>>;

    /// The resources of [`resource_ids_of_org`](Reads::resource_ids_of_org), in its order.
    fn resources_of_org(
        &self,
        org: &str,
        kind: Option<ResourceKind>,
        include_removed: bool,
    ) -> Result<Vec<ResourceRecord>>;

    // Usage counters.

    /// The stored total of the quota period that starts on day number `start` (0: none).
    fn period_usage(&self, org: &str, start: u32) -> Result<u64>;

    fn day_row(&self, org: &str, day: u32) -> Result<Option<DayRow>>;

    /// Day rows of `first..=last` (day numbers), in order.
    fn day_rows(&self, org: &str, first: u32, last: u32) -> Result<Vec<(u32, DayRow)>>;

    /// Idempotency keys of an organization with the time each was recorded (micros).
    fn idempotency_keys(&self, org: &str) -> Result<Vec<(String, i64)>>;

    // Entitlements.

    /// An organization's override of one named limit or feature.
    fn entitlement_override(&self, org: &str, name: &str) -> Result<Option<EntitlementValue>>;

    /// Every override of an organization, by name.
    fn entitlement_overrides(&self, org: &str) -> Result<Vec<(String, EntitlementValue)>>;

    /// An organization's reservation, live or expired (settled ones are gone).
    fn reservation(&self, org: &str, id: &str) -> Result<Option<Reservation>>;

    /// Every stored reservation of an organization (live or expired), by id.
    fn reservations(&self, org: &str) -> Result<Vec<Reservation>>;

    /// The usage alerts announced for the organization in the period `span`.
    fn alerts_fired(&self, org: &str, span: Span) -> Result<Vec<AlertFired>>;

    /// Every usage alert announced for the organization, by period, then threshold.
    fn alert_states(&self, org: &str) -> Result<Vec<AlertFired>>;

    /// Everything admitting usage of an organization reads, at once (one statement on a SQL
    /// backend): period totals with the quota live leases reserve (shared backends; 0 on a
    /// file, which one process holds), which keys are stored, resource columns.
    fn usage_state(&self, org: &str, ask: &UsageAsk<'_>) -> Result<UsageState>;

    /// [`usage_state`](Self::usage_state) of several organizations at once (one statement on
    /// a SQL backend, whatever their number), one answer per ask, in order.
    fn usage_states(&self, asks: &[(&str, UsageAsk<'_>)]) -> Result<Vec<UsageState>> {
        asks.iter()
            .map(|(org, ask)| self.usage_state(org, ask))
            .collect()
    }

    // Audit.

    /// Events after `after_seq`, in order, at most `limit`; one organization's or all.
    fn audit_events(
        &self,
        org: Option<&str>,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>>;

    // The whole database.

    /// Recomputes every index and stored counter from the rows and lists what disagrees.
    fn check(&self, now: DateTime<Utc>) -> Result<CheckReport>;

    /// Visits every record, header first, in a stable order; returns how many.
    fn export(&self, visit: &mut dyn FnMut(Record) -> Result<()>) -> Result<u64>;

    /// Whether the database holds no data yet (imports go into empty databases only).
    fn is_empty(&self) -> Result<bool>;
}

/// The typed writing interface. Every writer keeps its row's indexes and counters in step.
pub(crate) trait Writes: Reads {
    fn set_meta_u64(&mut self, name: &str, value: u64) -> Result<()>;

    /// Raises the prune mark (`USAGE_PRUNED_BEFORE`) to `before` (a date), never lowers it.
    fn raise_pruned_mark(&mut self, before: chrono::NaiveDate) -> Result<()> {
        let marked = self.meta_u64(super::USAGE_PRUNED_BEFORE)?.unwrap_or(0);
        let day = u64::from(super::day_number(before));
        self.set_meta_u64(super::USAGE_PRUNED_BEFORE, marked.max(day))
    }

    // Users.

    fn insert_user(&mut self, user: &User) -> Result<()>;

    fn replace_user(&mut self, old: &User, new: &User) -> Result<()>;

    fn remove_user(&mut self, user: &User) -> Result<()>;

    // Organizations.

    fn insert_org(&mut self, rec: &OrgRecord) -> Result<()>;

    fn replace_org(&mut self, old: &OrgRecord, new: &OrgRecord) -> Result<()>;

    /// Removes the organization row, its unique names and its counters (not its members:
    /// the caller removes those first).
    fn remove_org(&mut self, rec: &OrgRecord) -> Result<()>;

    // Memberships.

    /// Adds a membership of `user` (whose email and name it is found by in member searches).
    fn insert_membership(&mut self, m: &Membership, user: &User) -> Result<()>;

    /// Rewrites a membership whose role (and `updated_at`) changed.
    fn replace_membership(&mut self, old: &Membership, new: &Membership) -> Result<()>;

    fn remove_membership(&mut self, m: &Membership) -> Result<()>;

    // Invitations.

    fn insert_invitation(&mut self, rec: &InvitationRecord) -> Result<()>;

    /// Rewrites an invitation, moving its token and pending-index entries as they changed.
    fn replace_invitation(&mut self, old: &InvitationRecord, new: &InvitationRecord) -> Result<()>;

    fn remove_invitation(&mut self, rec: &InvitationRecord) -> Result<()>;

    // Projects.

    fn put_project(&mut self, project: &Project) -> Result<()>;

    /// Removes a project with all its project memberships.
    fn remove_project(&mut self, project: &Project) -> Result<()>;

    fn put_project_membership(&mut self, org: &str, pm: &ProjectMembership) -> Result<()>;

    fn remove_project_membership(&mut self, org: &str, project: &str, user: &str) -> Result<bool>;

    /// Removes a user from every project of an organization.
    fn remove_project_memberships_of(&mut self, org: &str, user: &str) -> Result<()>;

    // Resources.

    /// Registers a new resource, counts it and gives it the next usage column.
    fn insert_resource(&mut self, res: &Resource) -> Result<()>;

    /// Rewrites a resource's public fields (its column stays).
    fn put_resource(&mut self, res: &Resource) -> Result<()>;

    /// Marks a resource removed: it stops counting, its row stays (reports still name it).
    fn retire_resource(&mut self, res: &Resource) -> Result<()>;

    // Usage.

    /// Sets the stored total of one quota period.
    fn put_period_usage(&mut self, org: &str, span: Span, total: u64) -> Result<()>;

    /// Replaces every stored period total of an organization (its quota period changed).
    fn replace_period_totals(&mut self, org: &str, totals: &[(Span, u64)]) -> Result<()>;

    fn put_day_row(&mut self, org: &str, day: u32, row: &DayRow) -> Result<()>;

    fn put_idempotency(&mut self, org: &str, key: &str, at_micros: i64) -> Result<()>;

    fn delete_idempotency(&mut self, org: &str, key: &str) -> Result<bool>;

    /// Stores what admitted usage changes of one organization, at once (one statement on a
    /// SQL backend): new period totals, increments of day rows, new keys with the time each was
    /// recorded (micros).
    fn apply_usage(
        &mut self,
        org: &str,
        periods: &[(Span, u64)],
        days: &[(u32, &DayRow)],
        keys: &[(String, i64)],
    ) -> Result<()>;

    /// [`apply_usage`](Self::apply_usage) of several organizations at once (one statement on
    /// a SQL backend, whatever their number). An organization appears at most once.
    fn apply_usages(&mut self, writes: &[UsageWrite<'_>]) -> Result<()> {
        for w in writes {
            self.apply_usage(w.org, w.periods, w.days, w.keys)?;
        }
        Ok(())
    }

    /// Sets `holder`'s lease of an organization's quota period (by its first day) to
    /// `amount`, alive for `ttl` from now by the server's clock (0: removes it). Shared
    /// backends only.
    fn put_lease(
        &mut self,
        org: &str,
        period: u32,
        holder: &str,
        amount: u64,
        ttl: std::time::Duration,
    ) -> Result<()>;

    /// Moves every lease of an organization to the quota period that starts on day `period`
    /// (its rule changed: what the leases admitted is stored there, so that is where the
    /// other processes must count it). Nothing to do where there are no leases.
    fn move_leases(&mut self, org: &str, period: u32) -> Result<()>;

    /// Deletes day rows before `day`, period totals and announced alerts of periods that
    /// ended before `period_end` and idempotency records older than `key_cutoff` (micros),
    /// across organizations.
    fn prune_usage_rows(
        &mut self,
        day: u32,
        period_end: u32,
        key_cutoff: i64,
    ) -> Result<(u64, u64, u64)>;

    /// Removes everything scoped to an organization except its memberships, its own row and
    /// its audit history: invitations, projects, resources, usage and idempotency records.
    fn remove_org_scoped(&mut self, org: &str) -> Result<()>;

    /// Stores a reservation (under its organization and id).
    fn put_reservation(&mut self, r: &Reservation) -> Result<()>;

    /// Removes a reservation; whether it was there.
    fn delete_reservation(&mut self, org: &str, id: &str) -> Result<bool>;

    /// Records an announced usage alert (replacing one of the same period and threshold).
    fn put_alert_fired(&mut self, org: &str, fired: &AlertFired) -> Result<()>;

    /// Forgets every announcement of threshold `percent` (it was removed).
    fn forget_alerts(&mut self, org: &str, percent: u32) -> Result<()>;

    /// Sets (`Some`) or removes (`None`) an organization's override of a named limit or
    /// feature.
    fn put_entitlement_override(
        &mut self,
        org: &str,
        name: &str,
        value: Option<&EntitlementValue>,
    ) -> Result<()>;

    // Audit.

    /// Appends an event, giving it the next sequence number.
    fn append_audit(&mut self, event: AuditEvent) -> Result<AuditEvent>;

    /// Stores an event under its own sequence number (imports); false (and nothing written)
    /// when its feed already holds that number.
    fn insert_audit_event(&mut self, event: &AuditEvent) -> Result<bool>;

    /// Sets the last sequence number handed out, so appends continue after it (imports).
    fn set_audit_seq(&mut self, seq: u64) -> Result<()>;

    /// Whether one feed numbers every audit event of the database (each `seq` unique across
    /// organizations), so an import of a per-organization export must renumber its events.
    fn single_audit_feed(&self) -> bool;
}

/// Generic helpers over a raw key-value transaction (the typed interface's building blocks).
pub(crate) trait KvReadExt: KvRead {
    /// The value of `key` decoded by `decode` where it lies (see [`KvRead::get_with`]).
    fn get_decoded<T>(
        &self,
        table: Table,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<Option<T>> {
        let (mut decode, mut value) = (Some(decode), None);
        self.get_with(table, key, &mut |bytes| {
            if let Some(decode) = decode.take() {
                value = Some(decode(bytes)?);
            }
            Ok(())
        })?;
        Ok(value)
    }

    fn get_record<T: Stored>(&self, table: Table, key: &[u8]) -> Result<Option<T>> {
        self.get_decoded(table, key, T::decode)
    }

    fn get_string(&self, table: Table, key: &[u8]) -> Result<Option<String>> {
        self.get_decoded(table, key, codec::decode_id)
    }

    fn get_u64(&self, table: Table, key: &[u8]) -> Result<Option<u64>> {
        self.get_decoded(table, key, codec::decode_u64)
    }

    /// Visits every key under `prefix`, in order.
    fn scan_prefix(&self, table: Table, prefix: &[u8], visit: Visit<'_>) -> Result<()> {
        let end = prefix_end(prefix);
        self.scan(table, prefix, end.as_deref(), false, visit)
    }

    /// Collects the string component that follows `prefix` in each key under it.
    fn ids_under(&self, table: Table, prefix: &[u8]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.scan_prefix(table, prefix, &mut |k, _| {
            let mut r = KeyReader::new(&k[prefix.len()..]);
            let id = r
                .str()
                .ok_or_else(|| Error::corrupted(format!("bad key in {}", table.name())))?;
            out.push(id.to_owned());
            Ok(true)
        })?;
        Ok(out)
    }

    fn audit_event(&self, seq: u64) -> Result<Option<AuditEvent>> {
        self.get_record(Table::Audit, &Key::new().u64(seq).into_vec())
    }
}

impl<T: KvRead + ?Sized> KvReadExt for T {}

/// Generic write helpers over a raw key-value transaction.
pub(crate) trait KvWriteExt: KvWrite {
    fn put_record<T: Stored>(&mut self, table: Table, key: &[u8], value: &T) -> Result<()> {
        self.put(table, key, &value.encode()?)
    }

    fn put_u64(&mut self, table: Table, key: &[u8], value: u64) -> Result<()> {
        self.put(table, key, &codec::encode_u64(value))
    }

    /// Stores an id as an index value (checksummed).
    fn put_id(&mut self, table: Table, key: &[u8], id: &str) -> Result<()> {
        self.put(table, key, &codec::encode_id(id))
    }

    /// Deletes every key under `prefix`; returns how many.
    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<u64> {
        let mut doomed = Vec::new();
        self.scan_prefix(table, prefix, &mut |k, _| {
            doomed.push(k.to_vec());
            Ok(true)
        })?;
        for k in &doomed {
            self.delete(table, k)?;
        }
        Ok(doomed.len() as u64)
    }

    fn put_org_stats(&mut self, org: &str, stats: &OrgStats) -> Result<()> {
        self.put_record(Table::OrgStats, &keys::one(org), stats)
    }

    fn put_status_entry(&mut self, inv: &Invitation) -> Result<()> {
        let (key, value) = status_entry(inv);
        let prefix = status_prefix(&inv.organization_id, inv.status).into_vec();
        counted::insert(self, Table::InvitationsByStatus, &prefix, &key, &value)
    }

    fn remove_status_entry(&mut self, inv: &Invitation) -> Result<()> {
        let (key, _) = status_entry(inv);
        let prefix = status_prefix(&inv.organization_id, inv.status).into_vec();
        counted::remove(self, Table::InvitationsByStatus, &prefix, &key)
    }

    fn put_pending(&mut self, inv: &Invitation) -> Result<()> {
        self.put(
            Table::PendingInvitations,
            &keys::two(&inv.organization_id, &inv.email),
            &codec::encode_pending(&inv.id, inv.expires_at.timestamp_micros()),
        )
    }
}

impl<T: KvWrite + ?Sized> KvWriteExt for T {}

/// [`Reads::org_with_members`] composed of the fine reads: the trait's body (the embedded
/// backend's), and a SQL backend's where its one statement does not apply.
pub(crate) fn org_with_members_apart(
    tx: &(impl Reads + ?Sized),
    org: &str,
    user: Option<&str>,
    page: &MemberPage<'_>,
) -> Result<Option<OrgMembers>> {
    let found = match user {
        Some(user) => tx.org_with_role(org, user)?,
        None => tx.org(org)?.map(|rec| (rec, None)),
    };
    let Some((rec, role)) = found else {
        return Ok(None);
    };
    let rows = tx.member_rows(org, page)?;
    Ok(Some((rec, role, rows)))
}

impl<T: KvRead + ?Sized> Reads for T {
    fn run_again(&self, why: &str) -> Error {
        Error::storage(why)
    }

    fn meta_u64(&self, name: &str) -> Result<Option<u64>> {
        self.get_u64(Table::Meta, &meta_key(name))
    }

    fn user(&self, id: &str) -> Result<Option<User>> {
        self.get_record(Table::Users, &keys::one(id))
    }

    fn user_id_by_email(&self, email: &str) -> Result<Option<String>> {
        self.get_string(Table::UserEmail, &keys::one(email))
    }

    fn org(&self, id: &str) -> Result<Option<OrgRecord>> {
        self.get_record(Table::Orgs, &keys::one(id))
    }

    fn org_id_by_slug(&self, slug: &str) -> Result<Option<String>> {
        self.get_string(Table::OrgSlug, &keys::one(slug))
    }

    fn org_id_by_external(&self, external_id: &str) -> Result<Option<String>> {
        self.get_string(Table::OrgExternal, &keys::one(external_id))
    }

    fn org_stats(&self, org: &str) -> Result<OrgStats> {
        Ok(self
            .get_record(Table::OrgStats, &keys::one(org))?
            .unwrap_or_default())
    }

    fn org_overview(
        &self,
        org: &str,
        user: Option<&str>,
        now: DateTime<Utc>,
        day: Option<u32>,
    ) -> Result<Option<OrgOverview>> {
        let Some(rec) = self.org(org)? else {
            return Ok(None);
        };
        let period_total = match day {
            Some(day) => self.period_usage(org, Span::of(rec.period, day).start)?,
            None => 0,
        };
        let role = match user {
            Some(user) => self.membership(org, user)?.and_then(|m| m.acting_role()),
            None => None,
        };
        Ok(Some(OrgOverview {
            rec,
            stats: self.org_stats(org)?,
            role,
            pending: self.pending_unexpired_count(org, now)?,
            period_total,
        }))
    }

    fn membership(&self, org: &str, user: &str) -> Result<Option<Membership>> {
        self.get_record(Table::Memberships, &keys::two(org, user))
    }

    fn membership_by_id(&self, membership_id: &str) -> Result<Option<Membership>> {
        let Some(key) = self.get(Table::MembershipIds, &keys::one(membership_id))? else {
            return Ok(None);
        };
        self.get_record(Table::Memberships, &key)
    }

    fn member_rows(&self, org: &str, page: &MemberPage<'_>) -> Result<Vec<(Membership, User)>> {
        let mut out = Vec::new();
        let positions = member_positions(
            self, org, page.set, page.role, page.after, page.skip, page.limit,
        )?;
        for (_, _, user) in positions {
            let m = self
                .membership(org, &user)?
                .ok_or_else(|| Error::corrupted("member index names a missing membership"))?;
            let u = self
                .user(&user)?
                .ok_or_else(|| Error::corrupted("membership names a missing user"))?;
            out.push((m, u));
        }
        Ok(out)
    }

    fn deactivated_count(&self, org: &str, role: Option<Role>) -> Result<u64> {
        let (table, prefix) = list_index(true, org, role);
        counted::count(self, table, prefix.as_slice())
    }

    /// Without a search, the rows' own table in key (id) order, its length kept by the
    /// engine; with one, the hits of the prefix's range of the search table, deduplicated and
    /// sorted by id.
    fn directory(
        &self,
        which: Directory,
        prefix: Option<&str>,
        after: Option<&str>,
        skip: u64,
        limit: usize,
    ) -> Result<(u64, Vec<String>)> {
        let (rows, terms) = which.tables();
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        let Some(prefix) = prefix else {
            let start = match after {
                // The smallest key after the cursor's own.
                Some(id) => {
                    let mut k = keys::one(id);
                    k.push(0);
                    k
                }
                None => Vec::new(),
            };
            let (mut skipped, mut ids) = (0usize, Vec::new());
            if limit > 0 {
                self.scan(rows, &start, None, false, &mut |k, _| {
                    if skipped < skip {
                        skipped += 1;
                        return Ok(true);
                    }
                    let id = KeyReader::new(k)
                        .str()
                        .ok_or_else(|| Error::corrupted(format!("bad key in {}", rows.name())))?;
                    ids.push(id.to_owned());
                    Ok(ids.len() < limit)
                })?;
            }
            return Ok((self.len(rows)?, ids));
        };
        let low = prefix.as_bytes().to_vec();
        let high = prefix_end(&low);
        let mut hits = std::collections::BTreeSet::new();
        self.scan(terms, &low, high.as_deref(), false, &mut |k, _| {
            let mut r = KeyReader::new(k);
            let id = r
                .str()
                .and_then(|_term| r.str())
                .ok_or_else(|| Error::corrupted(format!("bad key in {}", terms.name())))?;
            hits.insert(id.to_owned());
            Ok(true)
        })?;
        let page = hits
            .iter()
            .filter(|id| after.is_none_or(|a| id.as_str() > a))
            .skip(skip)
            .take(limit)
            .cloned()
            .collect();
        Ok((hits.len() as u64, page))
    }

    /// Every hit of the prefix is read from `member_search` alone (its values carry status,
    /// role and join time), deduplicated by user, filtered, and sorted in list order; only
    /// the page's memberships and users are read.
    fn member_search(
        &self,
        org: &str,
        set: MemberSet,
        role: Option<Role>,
        prefix: &str,
        after: Option<&MemberPos>,
        skip: u64,
        limit: usize,
    ) -> Result<(u64, Vec<(Membership, User)>)> {
        let low = keys::member_search_prefix(org, prefix);
        let high = prefix_end(&low);
        let org_len = keys::one(org).len();
        let mut hits: std::collections::BTreeSet<MemberPos> = std::collections::BTreeSet::new();
        self.scan(
            Table::MemberSearch,
            &low,
            high.as_deref(),
            false,
            &mut |k, v| {
                let (off, rank, joined) = codec::decode_member_hit(v)?;
                let mut r = KeyReader::new(&k[org_len..]);
                let user = r
                    .str()
                    .and_then(|_term| r.str())
                    .ok_or_else(|| Error::corrupted("bad member search key"))?;
                let at = crate::model::time::from_micros(joined)
                    .ok_or_else(|| Error::corrupted("bad member search entry"))?;
                if set.includes(off) && role.is_none_or(|r| r.rank() == rank) {
                    hits.insert((off, at, user.to_owned()));
                }
                Ok(true)
            },
        )?;
        let total = hits.len() as u64;
        let page = hits
            .iter()
            .filter(|pos| after.is_none_or(|a| *pos > a))
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(limit);
        let mut out = Vec::new();
        for (_, _, user) in page {
            let m = self
                .membership(org, user)?
                .ok_or_else(|| Error::corrupted("member search names a missing membership"))?;
            let u = self
                .user(user)?
                .ok_or_else(|| Error::corrupted("membership names a missing user"))?;
            out.push((m, u));
        }
        Ok((total, out))
    }

    fn member_user_ids(&self, org: &str) -> Result<Vec<String>> {
        Ok(
            member_positions(self, org, MemberSet::All, None, None, 0, usize::MAX)?
                .into_iter()
                .map(|(_, _, user)| user)
                .collect(),
        )
    }

    fn user_org_ids(&self, user: &str) -> Result<Vec<String>> {
        self.ids_under(Table::UserOrgs, &keys::one(user))
    }

    fn invitation(&self, id: &str) -> Result<Option<InvitationRecord>> {
        self.get_record(Table::Invitations, &keys::one(id))
    }

    fn invitation_by_token_hash(&self, hash: &[u8; 32]) -> Result<Option<InvitationRecord>> {
        match self.get_string(Table::InvitationTokens, hash)? {
            Some(id) => self.invitation(&id),
            None => Ok(None),
        }
    }

    fn pending_invitation_id(&self, org: &str, email: &str) -> Result<Option<String>> {
        match self.get(Table::PendingInvitations, &keys::two(org, email))? {
            Some(bytes) => Ok(Some(codec::decode_pending(&bytes)?.0)),
            None => Ok(None),
        }
    }

    fn pending_unexpired_count(&self, org: &str, now: DateTime<Utc>) -> Result<u64> {
        let now = now.timestamp_micros();
        let mut n = 0u64;
        self.scan_prefix(Table::PendingInvitations, &keys::one(org), &mut |_, v| {
            let (_, expires) = codec::decode_pending(v)?;
            n += u64::from(now < expires);
            Ok(true)
        })?;
        Ok(n)
    }

    fn invitation_ids_of_org(&self, org: &str) -> Result<Vec<String>> {
        self.ids_under(Table::InvitationsByOrg, &keys::one(org))
    }

    fn invitation_ids_of_project(&self, project: &str) -> Result<Vec<String>> {
        self.ids_under(Table::InvitationsByProject, &keys::one(project))
    }

    fn invitation_page(
        &self,
        org: &str,
        status: Option<InvitationStatus>,
        now: DateTime<Utc>,
        skip: u64,
        limit: usize,
    ) -> Result<(Vec<String>, u64)> {
        use InvitationStatus::*;
        let Some(status) = status else {
            let prefix = keys::one(org);
            let total = counted::count(self, Table::InvitationsByOrg, &prefix)?;
            let ids = counted_ids(self, Table::InvitationsByOrg, &prefix, skip, limit)?;
            return Ok((ids, total));
        };
        let table = Table::InvitationsByStatus;
        let own = status_prefix(org, status).into_vec();
        if matches!(status, Accepted | Declined | Revoked) {
            let total = counted::count(self, table, &own)?;
            return Ok((counted_ids(self, table, &own, skip, limit)?, total));
        }
        // Stored-pending entries split into those still pending and those that read expired.
        let pending = status_prefix(org, Pending).into_vec();
        let now = now.timestamp_micros();
        let mut lapsed: Vec<String> = Vec::new();
        let mut stored_pending = 0u64;
        self.scan_prefix(table, &pending, &mut |k, v| {
            stored_pending += 1;
            if entry_expiry(v)? <= now {
                lapsed.push(entry_id(table, k, pending.len())?);
            }
            Ok(true)
        })?;
        let lapsed_n = lapsed.len() as u64;
        if status == Pending {
            let total = stored_pending - lapsed_n;
            if lapsed.is_empty() {
                return Ok((counted_ids(self, table, &pending, skip, limit)?, total));
            }
            let mut page = Paging::new(skip, limit);
            let mut lapsed = lapsed.iter().peekable();
            self.scan_prefix(table, &pending, &mut |k, _| {
                let id = entry_id(table, k, pending.len())?;
                if lapsed.next_if(|l| **l == id).is_some() {
                    return Ok(true);
                }
                Ok(page.offer(id))
            })?;
            return Ok((page.out, total));
        }
        // Expired: stored-expired entries merged (in id order) with the lapsed pending ones.
        let total = counted::count(self, table, &own)? + lapsed_n;
        if lapsed.is_empty() {
            return Ok((counted_ids(self, table, &own, skip, limit)?, total));
        }
        let mut page = Paging::new(skip, limit);
        let mut lapsed = lapsed.into_iter().peekable();
        let mut more = true;
        self.scan_prefix(table, &own, &mut |k, _| {
            let id = entry_id(table, k, own.len())?;
            while let Some(l) = lapsed.next_if(|l| *l < id) {
                if !page.offer(l) {
                    more = false;
                    return Ok(false);
                }
            }
            more = page.offer(id);
            Ok(more)
        })?;
        if more {
            for l in lapsed {
                if !page.offer(l) {
                    break;
                }
            }
        }
        Ok((page.out, total))
    }

    fn pending_invitation_ids_for_email(&self, email: &str) -> Result<Vec<String>> {
        self.ids_under(Table::InvitationsByEmail, &keys::one(email))
    }

    fn project(&self, id: &str) -> Result<Option<Project>> {
        self.get_record(Table::Projects, &keys::one(id))
    }

    fn project_ids_of_org(&self, org: &str) -> Result<Vec<String>> {
        self.ids_under(Table::ProjectsByOrg, &keys::one(org))
    }

    fn project_membership(&self, project: &str, user: &str) -> Result<Option<ProjectMembership>> {
        self.get_record(Table::ProjectMembers, &keys::two(project, user))
    }

    fn project_member_ids(&self, project: &str) -> Result<Vec<String>> {
        self.ids_under(Table::ProjectMembers, &keys::one(project))
    }

    fn project_ids_of_member(&self, org: &str, user: &str) -> Result<Vec<String>> {
        self.ids_under(Table::ProjectMembersByUser, &keys::two(org, user))
    }

    fn resource(&self, id: &str) -> Result<Option<Resource>> {
        Ok(self.resource_record(id)?.map(|r| r.resource))
    }

    fn resource_record(&self, id: &str) -> Result<Option<ResourceRecord>> {
        self.get_record(Table::Resources, &keys::one(id))
    }

    fn resource_ids_of_org(
        &self,
        org: &str,
        kind: Option<ResourceKind>,
        include_removed: bool,
    ) -> Result<Vec<String>> {
        let prefix = match kind {
            Some(kind) => Key::new().str(org).u8(kind.code()).into_vec(),
            None => keys::one(org),
        };
        let mut out = Vec::new();
        self.scan_prefix(Table::ResourcesByOrg, &prefix, &mut |k, live| {
            match live {
                [RESOURCE_LIVE] => {}
                [RESOURCE_REMOVED] if include_removed => {}
                [RESOURCE_REMOVED] => return Ok(true),
                _ => return Err(Error::corrupted("bad resource index flag")),
            }
            let mut r = KeyReader::new(k);
            let id = r
                .str()
                .and_then(|_| r.u8())
                .and_then(|_| r.str())
                .ok_or_else(|| Error::corrupted("bad resource index key"))?;
            out.push(id.to_owned());
            Ok(true)
        })?;
        Ok(out)
    }

    fn resources_of_org(
        &self,
        org: &str,
        kind: Option<ResourceKind>,
        include_removed: bool,
    ) -> Result<Vec<ResourceRecord>> {
        self.resource_ids_of_org(org, kind, include_removed)?
            .iter()
            .map(|id| {
                self.resource_record(id)?
                    .ok_or_else(|| Error::corrupted("resource index names a missing resource"))
            })
            .collect()
    }

    fn period_usage(&self, org: &str, start: u32) -> Result<u64> {
        Ok(self
            .get_u64(Table::UsagePeriod, &period_key(org, start))?
            .unwrap_or(0))
    }

    fn day_row(&self, org: &str, day: u32) -> Result<Option<DayRow>> {
        self.get_record(Table::UsageDay, &day_key(org, day))
    }

    fn day_rows(&self, org: &str, first: u32, last: u32) -> Result<Vec<(u32, DayRow)>> {
        let prefix_len = keys::one(org).len();
        let start = day_key(org, first);
        let end = day_key(org, last.saturating_add(1));
        let mut out = Vec::new();
        self.scan(Table::UsageDay, &start, Some(&end), false, &mut |k, v| {
            let day = k[prefix_len..]
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| Error::corrupted("bad usage day key"))?;
            out.push((day, DayRow::decode(v)?));
            Ok(true)
        })?;
        Ok(out)
    }

    /// One process holds a file: nothing is leased; live reservations are summed with
    /// `leases`.
    fn usage_state(&self, org: &str, ask: &UsageAsk<'_>) -> Result<UsageState> {
        let mut state = UsageState::default();
        let held = if ask.leases {
            self.reservations(org)?
                .iter()
                .filter(|r| r.expires_at.timestamp_micros() > ask.now_micros)
                .fold(0u64, |sum, r| sum.saturating_add(r.count))
        } else {
            0
        };
        for &start in ask.periods {
            state
                .periods
                .push((start, self.period_usage(org, start)?, held));
        }
        for key in ask.keys {
            if self
                .get(Table::Idempotency, &keys::two(org, key))?
                .is_some()
            {
                state.keys.push((*key).to_owned());
            }
        }
        for &id in ask.resources {
            let column = self.live_resource_column(org, id)?;
            state.columns.push((id.to_owned(), column));
        }
        Ok(state)
    }

    fn idempotency_keys(&self, org: &str) -> Result<Vec<(String, i64)>> {
        let prefix = keys::one(org);
        let mut out = Vec::new();
        self.scan_prefix(Table::Idempotency, &prefix, &mut |k, v| {
            let key = KeyReader::new(&k[prefix.len()..])
                .str()
                .ok_or_else(|| Error::corrupted("bad idempotency key"))?;
            out.push((key.to_owned(), codec::decode_u64(v)? as i64));
            Ok(true)
        })?;
        Ok(out)
    }

    fn entitlement_override(&self, org: &str, name: &str) -> Result<Option<EntitlementValue>> {
        self.get_record(Table::EntitlementOverrides, &keys::two(org, name))
    }

    fn entitlement_overrides(&self, org: &str) -> Result<Vec<(String, EntitlementValue)>> {
        let prefix = keys::one(org);
        let mut out = Vec::new();
        self.scan_prefix(Table::EntitlementOverrides, &prefix, &mut |k, v| {
            let name = KeyReader::new(&k[prefix.len()..])
                .str()
                .ok_or_else(|| Error::corrupted("bad entitlement override key"))?;
            out.push((name.to_owned(), EntitlementValue::decode(v)?));
            Ok(true)
        })?;
        Ok(out)
    }

    fn reservation(&self, org: &str, id: &str) -> Result<Option<Reservation>> {
        self.get_record(Table::Reservations, &keys::two(org, id))
    }

    fn reservations(&self, org: &str) -> Result<Vec<Reservation>> {
        let mut out = Vec::new();
        self.scan_prefix(Table::Reservations, &keys::one(org), &mut |_, v| {
            out.push(Reservation::decode(v)?);
            Ok(true)
        })?;
        Ok(out)
    }

    fn alerts_fired(&self, org: &str, span: Span) -> Result<Vec<AlertFired>> {
        let prefix = Key::new().str(org).u32(span.start).u32(span.end).into_vec();
        alert_rows(self, &prefix)
    }

    fn alert_states(&self, org: &str) -> Result<Vec<AlertFired>> {
        alert_rows(self, &keys::one(org))
    }

    fn audit_events(
        &self,
        org: Option<&str>,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        let mut seqs = Vec::new();
        match org {
            Some(org) => {
                let prefix = keys::one(org);
                let start = Key::new()
                    .str(org)
                    .u64(after_seq.saturating_add(1))
                    .into_vec();
                let end = prefix_end(&prefix);
                self.scan(
                    Table::AuditByOrg,
                    &start,
                    end.as_deref(),
                    false,
                    &mut |k, _| {
                        let seq = KeyReader::new(&k[prefix.len()..])
                            .u64()
                            .ok_or_else(|| Error::corrupted("bad audit index key"))?;
                        seqs.push(seq);
                        Ok(seqs.len() < limit)
                    },
                )?;
            }
            None => {
                let start = Key::new().u64(after_seq.saturating_add(1)).into_vec();
                self.scan(Table::Audit, &start, None, false, &mut |k, _| {
                    let seq = KeyReader::new(k)
                        .u64()
                        .ok_or_else(|| Error::corrupted("bad audit key"))?;
                    seqs.push(seq);
                    Ok(seqs.len() < limit)
                })?;
            }
        }
        seqs.into_iter()
            .map(|seq| {
                self.audit_event(seq)?.ok_or_else(|| {
                    Error::corrupted(format!("audit index names missing event {seq}"))
                })
            })
            .collect()
    }

    fn check(&self, now: DateTime<Utc>) -> Result<CheckReport> {
        super::check::check(self, now)
    }

    fn export(&self, visit: &mut dyn FnMut(Record) -> Result<()>) -> Result<u64> {
        super::transfer::export(self, visit)
    }

    fn is_empty(&self) -> Result<bool> {
        super::transfer::is_empty(self)
    }
}

/// The list index of active (`false`) or deactivated (`true`) members of `org`, by join time
/// or of one role, and its counted prefix there.
fn list_index(deactivated: bool, org: &str, role: Option<Role>) -> (Table, Key) {
    let (by_join, by_role) = keys::member_tables(deactivated);
    match role {
        Some(role) => (by_role, role_prefix(org, role)),
        None => (by_join, join_prefix(org)),
    }
}

/// Member positions of the list `set` of `org` (optionally one role) in list order, starting
/// strictly after `after`, skipping `skip` rows, at most `limit` rows. A list of every
/// member reads the active part, then the deactivated part: an offset past the active part
/// seeks into the deactivated one by its count.
fn member_positions<R: KvRead + ?Sized>(
    tx: &R,
    org: &str,
    set: MemberSet,
    role: Option<Role>,
    after: Option<&MemberPos>,
    skip: u64,
    limit: usize,
) -> Result<Vec<MemberPos>> {
    let mut out = Vec::with_capacity(limit.min(128));
    let mut skip = skip;
    for deactivated in [false, true] {
        if !set.includes(deactivated) || out.len() >= limit {
            continue;
        }
        let after = match after {
            // A cursor in the deactivated part: the active part is behind it.
            Some((true, ..)) if !deactivated => continue,
            Some((false, ..)) if deactivated => None,
            Some((_, at, user)) => Some((*at, user.as_str())),
            None => None,
        };
        let (table, prefix) = list_index(deactivated, org, role);
        let before = out.len();
        positions_in(
            tx,
            table,
            &prefix,
            after,
            skip,
            limit,
            deactivated,
            &mut out,
        )?;
        // What the next part skips: nothing once this one gave a row, else what is left of
        // the offset past this part's entries.
        skip = if out.len() > before || skip == 0 {
            0
        } else {
            skip.saturating_sub(counted::count(tx, table, prefix.as_slice())?)
        };
    }
    Ok(out)
}

/// [`member_positions`] in one list index, appending to `out` until it holds `limit`.
#[allow(clippy::too_many_arguments)]
fn positions_in<R: KvRead + ?Sized>(
    tx: &R,
    table: Table,
    prefix: &Key,
    after: Option<(DateTime<Utc>, &str)>,
    skip: u64,
    limit: usize,
    deactivated: bool,
    out: &mut Vec<MemberPos>,
) -> Result<()> {
    if out.len() >= limit {
        return Ok(());
    }
    let end = prefix_end(prefix.as_slice());
    let (start, skip) = match after {
        // The smallest key greater than the cursor's own key.
        Some((at, user)) => {
            let mut k = prefix.clone().time(at).str(user).into_vec();
            k.push(0);
            (k, skip)
        }
        None if skip > 0 => counted::seek(tx, table, prefix.as_slice(), skip)?,
        None => (prefix.as_slice().to_vec(), 0),
    };
    let prefix_len = prefix.as_slice().len();
    let mut skipped = 0u64;
    tx.scan(table, &start, end.as_deref(), false, &mut |k, _| {
        if skipped < skip {
            skipped += 1;
            return Ok(true);
        }
        let mut r = KeyReader::new(&k[prefix_len..]);
        let pos = r.u64().zip(r.str()).and_then(|(micros, user)| {
            crate::model::time::from_micros(micros as i64)
                .map(|t| (deactivated, t, user.to_owned()))
        });
        let pos = pos.ok_or_else(|| Error::corrupted("bad member index key"))?;
        out.push(pos);
        Ok(out.len() < limit)
    })?;
    Ok(())
}

/// Adds (`add`) or removes a membership's entries in the list indexes of its status.
fn list_entries<W: KvWrite + ?Sized>(tx: &mut W, m: &Membership, add: bool) -> Result<()> {
    let (org, user) = (&m.organization_id, &m.user_id);
    let (by_join, by_role) = keys::member_tables(!m.is_active());
    let entries = [
        (
            by_join,
            join_prefix(org),
            member_join_key(org, m.joined_at, user),
        ),
        (
            by_role,
            role_prefix(org, m.role),
            member_role_key(org, m.role, m.joined_at, user),
        ),
    ];
    for (table, prefix, key) in entries {
        if add {
            counted::insert(tx, table, prefix.as_slice(), &key, &[])?;
        } else {
            counted::remove(tx, table, prefix.as_slice(), &key)?;
        }
    }
    Ok(())
}

/// Adds (`add`) or removes a membership's `member_search` entries: one per search term of
/// `user`, each carrying the membership's status, role and join time.
fn search_entries<W: KvWrite + ?Sized>(
    tx: &mut W,
    m: &Membership,
    user: &User,
    add: bool,
) -> Result<()> {
    let value = codec::encode_member_hit(
        !m.is_active(),
        m.role.rank(),
        m.joined_at.timestamp_micros(),
    );
    for term in search_terms(&user.email, &user.name) {
        let key = keys::member_search_key(&m.organization_id, &term, &m.user_id);
        if add {
            tx.put(Table::MemberSearch, &key, &value)?;
        } else {
            tx.delete(Table::MemberSearch, &key)?;
        }
    }
    Ok(())
}

/// Adds (`add`) or removes the search entries (`term ∅ id ∅`) of one row of a system list.
fn directory_entries<W: KvWrite + ?Sized>(
    tx: &mut W,
    table: Table,
    terms: &[String],
    id: &str,
    add: bool,
) -> Result<()> {
    for term in terms {
        let key = keys::two(term, id);
        if add {
            tx.put(table, &key, &[])?;
        } else {
            tx.delete(table, &key)?;
        }
    }
    Ok(())
}

/// Counts an active membership in (`delta` 1) or out of (-1) its organization's counters.
fn count_member(stats: &mut OrgStats, m: &Membership, delta: i64) {
    if !m.is_active() {
        return;
    }
    let step = |n: &mut u64| {
        *n = if delta >= 0 {
            n.saturating_add(delta.unsigned_abs())
        } else {
            n.saturating_sub(delta.unsigned_abs())
        };
    };
    step(&mut stats.members);
    step(&mut stats.by_role[m.role.rank() as usize]);
}

impl<T: KvWrite + ?Sized> Writes for T {
    fn set_meta_u64(&mut self, name: &str, value: u64) -> Result<()> {
        self.put_u64(Table::Meta, &meta_key(name), value)
    }

    fn insert_user(&mut self, user: &User) -> Result<()> {
        let terms = search_terms(&user.email, &user.name);
        directory_entries(self, Table::UserSearch, &terms, &user.id, true)?;
        self.put_record(Table::Users, &keys::one(&user.id), user)?;
        self.put_id(Table::UserEmail, &keys::one(&user.email), &user.id)
    }

    fn replace_user(&mut self, old: &User, new: &User) -> Result<()> {
        if old.email != new.email {
            self.delete(Table::UserEmail, &keys::one(&old.email))?;
            self.put_id(Table::UserEmail, &keys::one(&new.email), &new.id)?;
        }
        let (old_terms, new_terms) = (
            search_terms(&old.email, &old.name),
            search_terms(&new.email, &new.name),
        );
        if old_terms != new_terms {
            directory_entries(self, Table::UserSearch, &old_terms, &old.id, false)?;
            directory_entries(self, Table::UserSearch, &new_terms, &new.id, true)?;
            for org in self.user_org_ids(&new.id)? {
                if let Some(m) = self.membership(&org, &new.id)? {
                    search_entries(self, &m, old, false)?;
                    search_entries(self, &m, new, true)?;
                }
            }
        }
        self.put_record(Table::Users, &keys::one(&new.id), new)
    }

    fn remove_user(&mut self, user: &User) -> Result<()> {
        let terms = search_terms(&user.email, &user.name);
        directory_entries(self, Table::UserSearch, &terms, &user.id, false)?;
        self.delete(Table::Users, &keys::one(&user.id))?;
        self.delete(Table::UserEmail, &keys::one(&user.email))?;
        Ok(())
    }

    fn insert_org(&mut self, rec: &OrgRecord) -> Result<()> {
        let org = &rec.org;
        directory_entries(self, Table::OrgSearch, &org_terms(org), &org.id, true)?;
        self.put_record(Table::Orgs, &keys::one(&org.id), rec)?;
        self.put_id(Table::OrgSlug, &keys::one(&org.slug), &org.id)?;
        if let Some(ext) = &org.external_id {
            self.put_id(Table::OrgExternal, &keys::one(ext), &org.id)?;
        }
        Ok(())
    }

    fn replace_org(&mut self, old: &OrgRecord, new: &OrgRecord) -> Result<()> {
        let (o, n) = (&old.org, &new.org);
        let (old_terms, new_terms) = (org_terms(o), org_terms(n));
        if old_terms != new_terms {
            directory_entries(self, Table::OrgSearch, &old_terms, &o.id, false)?;
            directory_entries(self, Table::OrgSearch, &new_terms, &n.id, true)?;
        }
        if o.slug != n.slug {
            self.delete(Table::OrgSlug, &keys::one(&o.slug))?;
            self.put_id(Table::OrgSlug, &keys::one(&n.slug), &n.id)?;
        }
        if o.external_id != n.external_id {
            if let Some(ext) = &o.external_id {
                self.delete(Table::OrgExternal, &keys::one(ext))?;
            }
            if let Some(ext) = &n.external_id {
                self.put_id(Table::OrgExternal, &keys::one(ext), &n.id)?;
            }
        }
        self.put_record(Table::Orgs, &keys::one(&n.id), new)
    }

    fn remove_org(&mut self, rec: &OrgRecord) -> Result<()> {
        let org = &rec.org;
        directory_entries(self, Table::OrgSearch, &org_terms(org), &org.id, false)?;
        self.delete(Table::Orgs, &keys::one(&org.id))?;
        self.delete(Table::OrgSlug, &keys::one(&org.slug))?;
        if let Some(ext) = &org.external_id {
            self.delete(Table::OrgExternal, &keys::one(ext))?;
        }
        self.delete(Table::OrgStats, &keys::one(&org.id))?;
        Ok(())
    }

    fn insert_membership(&mut self, m: &Membership, u: &User) -> Result<()> {
        let (org, user) = (&m.organization_id, &m.user_id);
        let key = keys::two(org, user);
        self.put_record(Table::Memberships, &key, m)?;
        self.put(Table::MembershipIds, &keys::one(&m.id), &key)?;
        list_entries(self, m, true)?;
        search_entries(self, m, u, true)?;
        self.put(Table::UserOrgs, &keys::two(user, org), &[])?;
        let mut stats = self.org_stats(org)?;
        count_member(&mut stats, m, 1);
        self.put_org_stats(org, &stats)
    }

    fn replace_membership(&mut self, old: &Membership, new: &Membership) -> Result<()> {
        let (org, user) = (&new.organization_id, &new.user_id);
        self.put_record(Table::Memberships, &keys::two(org, user), new)?;
        let listed = |m: &Membership| (m.is_active(), m.role, m.joined_at);
        if listed(old) != listed(new) {
            list_entries(self, old, false)?;
            list_entries(self, new, true)?;
            if let Some(u) = self.user(user)? {
                // Same keys, new values.
                search_entries(self, new, &u, true)?;
            }
            let mut stats = self.org_stats(org)?;
            count_member(&mut stats, old, -1);
            count_member(&mut stats, new, 1);
            self.put_org_stats(org, &stats)?;
        }
        Ok(())
    }

    fn remove_membership(&mut self, m: &Membership) -> Result<()> {
        let (org, user) = (&m.organization_id, &m.user_id);
        self.delete(Table::Memberships, &keys::two(org, user))?;
        self.delete(Table::MembershipIds, &keys::one(&m.id))?;
        list_entries(self, m, false)?;
        if let Some(u) = self.user(user)? {
            search_entries(self, m, &u, false)?;
        }
        self.delete(Table::UserOrgs, &keys::two(user, org))?;
        let mut stats = self.org_stats(org)?;
        count_member(&mut stats, m, -1);
        self.put_org_stats(org, &stats)
    }

    fn insert_invitation(&mut self, rec: &InvitationRecord) -> Result<()> {
        let inv = &rec.invitation;
        self.put_record(Table::Invitations, &keys::one(&inv.id), rec)?;
        self.put_id(Table::InvitationTokens, &rec.token_hash, &inv.id)?;
        counted::insert(
            self,
            Table::InvitationsByOrg,
            &keys::one(&inv.organization_id),
            &keys::two(&inv.organization_id, &inv.id),
            &[],
        )?;
        self.put_status_entry(inv)?;
        if let Some(project) = &inv.project_id {
            self.put(
                Table::InvitationsByProject,
                &keys::two(project, &inv.id),
                &[],
            )?;
        }
        if inv.status == InvitationStatus::Pending {
            self.put_pending(inv)?;
            self.put(
                Table::InvitationsByEmail,
                &keys::two(&inv.email, &inv.id),
                &[],
            )?;
        }
        Ok(())
    }

    fn replace_invitation(&mut self, old: &InvitationRecord, new: &InvitationRecord) -> Result<()> {
        let (o, n) = (&old.invitation, &new.invitation);
        if old.token_hash != new.token_hash {
            self.delete(Table::InvitationTokens, &old.token_hash)?;
            self.put_id(Table::InvitationTokens, &new.token_hash, &n.id)?;
        }
        let was = o.status == InvitationStatus::Pending;
        let is = n.status == InvitationStatus::Pending;
        if was && !is {
            self.delete(
                Table::PendingInvitations,
                &keys::two(&o.organization_id, &o.email),
            )?;
            self.delete(Table::InvitationsByEmail, &keys::two(&o.email, &o.id))?;
        } else if is && !was {
            self.put_pending(n)?;
            self.put(Table::InvitationsByEmail, &keys::two(&n.email, &n.id), &[])?;
        } else if is && o.expires_at != n.expires_at {
            // A resend: the entry carries the expiry.
            self.put_pending(n)?;
        }
        if o.status != n.status {
            self.remove_status_entry(o)?;
            self.put_status_entry(n)?;
        } else if o.expires_at != n.expires_at {
            self.put_status_entry(n)?;
        }
        if o.project_id != n.project_id {
            if let Some(project) = &o.project_id {
                self.delete(Table::InvitationsByProject, &keys::two(project, &o.id))?;
            }
            if let Some(project) = &n.project_id {
                self.put(Table::InvitationsByProject, &keys::two(project, &n.id), &[])?;
            }
        }
        self.put_record(Table::Invitations, &keys::one(&n.id), new)
    }

    fn remove_invitation(&mut self, rec: &InvitationRecord) -> Result<()> {
        let inv = &rec.invitation;
        if inv.status == InvitationStatus::Pending {
            self.delete(
                Table::PendingInvitations,
                &keys::two(&inv.organization_id, &inv.email),
            )?;
            self.delete(Table::InvitationsByEmail, &keys::two(&inv.email, &inv.id))?;
        }
        self.delete(Table::InvitationTokens, &rec.token_hash)?;
        counted::remove(
            self,
            Table::InvitationsByOrg,
            &keys::one(&inv.organization_id),
            &keys::two(&inv.organization_id, &inv.id),
        )?;
        self.remove_status_entry(inv)?;
        if let Some(project) = &inv.project_id {
            self.delete(Table::InvitationsByProject, &keys::two(project, &inv.id))?;
        }
        self.delete(Table::Invitations, &keys::one(&inv.id))?;
        Ok(())
    }

    fn put_project(&mut self, project: &Project) -> Result<()> {
        self.put_record(Table::Projects, &keys::one(&project.id), project)?;
        self.put(
            Table::ProjectsByOrg,
            &keys::two(&project.organization_id, &project.id),
            &[],
        )
    }

    fn remove_project(&mut self, project: &Project) -> Result<()> {
        for user in self.project_member_ids(&project.id)? {
            self.delete(Table::ProjectMembers, &keys::two(&project.id, &user))?;
            self.delete(
                Table::ProjectMembersByUser,
                &Key::new()
                    .str(&project.organization_id)
                    .str(&user)
                    .str(&project.id)
                    .into_vec(),
            )?;
        }
        self.delete(
            Table::ProjectsByOrg,
            &keys::two(&project.organization_id, &project.id),
        )?;
        self.delete(Table::Projects, &keys::one(&project.id))?;
        Ok(())
    }

    fn put_project_membership(&mut self, org: &str, pm: &ProjectMembership) -> Result<()> {
        self.put_record(
            Table::ProjectMembers,
            &keys::two(&pm.project_id, &pm.user_id),
            pm,
        )?;
        self.put(
            Table::ProjectMembersByUser,
            &Key::new()
                .str(org)
                .str(&pm.user_id)
                .str(&pm.project_id)
                .into_vec(),
            &[],
        )
    }

    fn remove_project_membership(&mut self, org: &str, project: &str, user: &str) -> Result<bool> {
        let existed = self.delete(Table::ProjectMembers, &keys::two(project, user))?;
        self.delete(
            Table::ProjectMembersByUser,
            &Key::new().str(org).str(user).str(project).into_vec(),
        )?;
        Ok(existed)
    }

    fn remove_project_memberships_of(&mut self, org: &str, user: &str) -> Result<()> {
        for project in self.project_ids_of_member(org, user)? {
            self.remove_project_membership(org, &project, user)?;
        }
        Ok(())
    }

    fn insert_resource(&mut self, res: &Resource) -> Result<()> {
        let mut stats = self.org_stats(&res.organization_id)?;
        let rec = ResourceRecord {
            resource: res.clone(),
            column: stats.resource_columns,
        };
        self.put_record(Table::Resources, &keys::one(&res.id), &rec)?;
        self.put(
            Table::ResourcesByOrg,
            &resource_org_key(res),
            &[RESOURCE_LIVE],
        )?;
        *stats.resource_count_mut(res.kind) += 1;
        stats.resource_columns += 1;
        self.put_org_stats(&res.organization_id, &stats)
    }

    fn put_resource(&mut self, res: &Resource) -> Result<()> {
        let mut rec = self
            .resource_record(&res.id)?
            .ok_or_else(|| Error::corrupted("rewriting a missing resource"))?;
        rec.resource = res.clone();
        self.put_record(Table::Resources, &keys::one(&res.id), &rec)
    }

    fn retire_resource(&mut self, res: &Resource) -> Result<()> {
        self.put_resource(res)?;
        self.put(
            Table::ResourcesByOrg,
            &resource_org_key(res),
            &[RESOURCE_REMOVED],
        )?;
        let mut stats = self.org_stats(&res.organization_id)?;
        let count = stats.resource_count_mut(res.kind);
        *count = count.saturating_sub(1);
        self.put_org_stats(&res.organization_id, &stats)
    }

    fn put_period_usage(&mut self, org: &str, span: Span, total: u64) -> Result<()> {
        self.put_u64(Table::UsagePeriod, &period_key(org, span.start), total)
    }

    fn replace_period_totals(&mut self, org: &str, totals: &[(Span, u64)]) -> Result<()> {
        self.delete_prefix(Table::UsagePeriod, &keys::one(org))?;
        for &(span, total) in totals {
            self.put_period_usage(org, span, total)?;
        }
        Ok(())
    }

    fn put_day_row(&mut self, org: &str, day: u32, row: &DayRow) -> Result<()> {
        self.put_record(Table::UsageDay, &day_key(org, day), row)
    }

    fn put_idempotency(&mut self, org: &str, key: &str, at_micros: i64) -> Result<()> {
        self.put_u64(Table::Idempotency, &keys::two(org, key), at_micros as u64)
    }

    fn put_lease(
        &mut self,
        _org: &str,
        _period: u32,
        _holder: &str,
        _amount: u64,
        _ttl: std::time::Duration,
    ) -> Result<()> {
        Err(Error::storage(
            "usage leases belong to shared backends; a file is used by one process",
        ))
    }

    fn move_leases(&mut self, _org: &str, _period: u32) -> Result<()> {
        Ok(())
    }

    fn apply_usage(
        &mut self,
        org: &str,
        periods: &[(Span, u64)],
        days: &[(u32, &DayRow)],
        keys: &[(String, i64)],
    ) -> Result<()> {
        for &(span, total) in periods {
            self.put_period_usage(org, span, total)?;
        }
        for &(day, delta) in days {
            let mut row = self.day_row(org, day)?.unwrap_or_default();
            row.merge(delta);
            self.put_day_row(org, day, &row)?;
        }
        for (key, at) in keys {
            self.put_idempotency(org, key, *at)?;
        }
        Ok(())
    }

    fn delete_idempotency(&mut self, org: &str, key: &str) -> Result<bool> {
        self.delete(Table::Idempotency, &keys::two(org, key))
    }

    fn prune_usage_rows(
        &mut self,
        day: u32,
        period_end: u32,
        key_cutoff: i64,
    ) -> Result<(u64, u64, u64)> {
        // Keys are org ∅ + 4-byte number: the number is the last 4 bytes.
        let mut doomed_days = Vec::new();
        self.scan(Table::UsageDay, &[], None, false, &mut |k, _| {
            let n = k
                .len()
                .checked_sub(4)
                .map(|i| u32::from_be_bytes(k[i..].try_into().unwrap_or_default()));
            if n.is_some_and(|n| n < day) {
                doomed_days.push(k.to_vec());
            }
            Ok(true)
        })?;
        // A period total goes once its period (cut by the organization's rule) has ended.
        let mut periods: Vec<(String, u32, Vec<u8>)> = Vec::new();
        self.scan(Table::UsagePeriod, &[], None, false, &mut |k, _| {
            let mut r = KeyReader::new(k);
            if let (Some(org), Some(start)) = (r.str(), r.u32()) {
                periods.push((org.to_owned(), start, k.to_vec()));
            }
            Ok(true)
        })?;
        let mut rules: std::collections::HashMap<String, Option<QuotaPeriod>> =
            std::collections::HashMap::new();
        let mut doomed_periods = Vec::new();
        for (org, start, key) in periods {
            if !rules.contains_key(&org) {
                let rule = self.org(&org)?.map(|rec| rec.period);
                rules.insert(org.clone(), rule);
            }
            // A row of a missing organization is `check()`'s to report, not prune's.
            if let Some(Some(rule)) = rules.get(&org) {
                if Span::of(*rule, start).end < period_end {
                    doomed_periods.push(key);
                }
            }
        }
        let mut doomed_keys = Vec::new();
        self.scan(Table::Idempotency, &[], None, false, &mut |k, v| {
            if (codec::decode_u64(v)? as i64) < key_cutoff {
                doomed_keys.push(k.to_vec());
            }
            Ok(true)
        })?;
        for k in &doomed_days {
            self.delete(Table::UsageDay, k)?;
        }
        for k in &doomed_periods {
            self.delete(Table::UsagePeriod, k)?;
        }
        // Announced alerts of periods that ended before `period_end`, as their totals.
        let mut doomed_alerts = Vec::new();
        self.scan(Table::AlertState, &[], None, false, &mut |k, _| {
            let mut r = KeyReader::new(k);
            if let (Some(_), Some(_), Some(end)) = (r.str(), r.u32(), r.u32()) {
                if end < period_end {
                    doomed_alerts.push(k.to_vec());
                }
            }
            Ok(true)
        })?;
        for k in &doomed_alerts {
            self.delete(Table::AlertState, k)?;
        }
        for k in &doomed_keys {
            self.delete(Table::Idempotency, k)?;
        }
        Ok((
            doomed_days.len() as u64,
            doomed_periods.len() as u64,
            doomed_keys.len() as u64,
        ))
    }

    fn remove_org_scoped(&mut self, org: &str) -> Result<()> {
        for id in self.invitation_ids_of_org(org)? {
            if let Some(rec) = self.invitation(&id)? {
                self.remove_invitation(&rec)?;
            }
        }
        for id in self.project_ids_of_org(org)? {
            if let Some(project) = self.project(&id)? {
                self.remove_project(&project)?;
            }
        }
        for id in self.resource_ids_of_org(org, None, true)? {
            self.delete(Table::Resources, &keys::one(&id))?;
        }
        let prefix = keys::one(org);
        for table in [
            Table::ResourcesByOrg,
            Table::ProjectMembersByUser,
            Table::UsagePeriod,
            Table::UsageDay,
            Table::Idempotency,
            Table::EntitlementOverrides,
            Table::AlertState,
            Table::Reservations,
        ] {
            self.delete_prefix(table, &prefix)?;
        }
        Ok(())
    }

    fn put_entitlement_override(
        &mut self,
        org: &str,
        name: &str,
        value: Option<&EntitlementValue>,
    ) -> Result<()> {
        let key = keys::two(org, name);
        match value {
            Some(value) => self.put_record(Table::EntitlementOverrides, &key, value),
            None => self.delete(Table::EntitlementOverrides, &key).map(|_| ()),
        }
    }

    fn put_reservation(&mut self, r: &Reservation) -> Result<()> {
        self.put_record(
            Table::Reservations,
            &keys::two(&r.organization_id, &r.id),
            r,
        )
    }

    fn delete_reservation(&mut self, org: &str, id: &str) -> Result<bool> {
        self.delete(Table::Reservations, &keys::two(org, id))
    }

    fn put_alert_fired(&mut self, org: &str, fired: &AlertFired) -> Result<()> {
        let key = keys::alert_key(org, fired.span, fired.percent);
        self.put_u64(Table::AlertState, &key, fired.limit)
    }

    fn forget_alerts(&mut self, org: &str, percent: u32) -> Result<()> {
        for fired in self.alert_states(org)? {
            if fired.percent == percent {
                self.delete(
                    Table::AlertState,
                    &keys::alert_key(org, fired.span, percent),
                )?;
            }
        }
        Ok(())
    }

    fn append_audit(&mut self, mut event: AuditEvent) -> Result<AuditEvent> {
        let seq = self.meta_u64(schema::AUDIT_SEQ)?.unwrap_or(0) + 1;
        event.seq = seq;
        self.put_record(Table::Audit, &Key::new().u64(seq).into_vec(), &event)?;
        if let Some(org) = &event.organization_id {
            self.put(
                Table::AuditByOrg,
                &Key::new().str(org).u64(seq).into_vec(),
                &[],
            )?;
        }
        self.set_meta_u64(schema::AUDIT_SEQ, seq)?;
        Ok(event)
    }

    fn insert_audit_event(&mut self, event: &AuditEvent) -> Result<bool> {
        let seq = event.seq;
        if self.audit_event(seq)?.is_some() {
            return Ok(false);
        }
        if let Some(org) = &event.organization_id {
            self.put(
                Table::AuditByOrg,
                &Key::new().str(org).u64(seq).into_vec(),
                &[],
            )?;
        }
        self.put_record(Table::Audit, &Key::new().u64(seq).into_vec(), event)?;
        Ok(true)
    }

    fn set_audit_seq(&mut self, seq: u64) -> Result<()> {
        self.set_meta_u64(schema::AUDIT_SEQ, seq)
    }

    /// The embedded backend numbers all events in one feed (`meta.audit_seq`).
    fn single_audit_feed(&self) -> bool {
        true
    }
}

/// The announced alerts under `prefix` of `usage_alert_state` (an organization, or one of its
/// periods): key `org ∅ start end percent`, value the limit.
fn alert_rows<R: KvRead + ?Sized>(tx: &R, prefix: &[u8]) -> Result<Vec<AlertFired>> {
    let mut out = Vec::new();
    tx.scan_prefix(Table::AlertState, prefix, &mut |k, v| {
        let mut r = KeyReader::new(k);
        let bad = || Error::corrupted("bad usage alert state key");
        r.str().ok_or_else(bad)?;
        let (start, end, percent) = (
            r.u32().ok_or_else(bad)?,
            r.u32().ok_or_else(bad)?,
            r.u32().ok_or_else(bad)?,
        );
        out.push(AlertFired {
            span: Span { start, end },
            percent,
            limit: codec::decode_u64(v)?,
        });
        Ok(true)
    })?;
    Ok(out)
}
