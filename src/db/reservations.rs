//! `Db`: usage reservations — hold quota before an expensive call, settle the real cost after.

use crate::error::Result;
use crate::model::reservation::{NewReservation, Reservation};
use crate::model::usage::UsageReceipt;
use crate::ops;

use super::Db;

impl Db {
    /// Holds `count` requests of the organization's quota for `expires_in` (default
    /// `Options::reservation_ttl`, 5 minutes): the hold counts against the quota at once, so
    /// every admission anywhere (records, recorders, other reservations, other processes on
    /// PostgreSQL) sees it. Settle it with [`commit_reservation`](Self::commit_reservation) or
    /// [`release_reservation`](Self::release_reservation); unsettled, it stops counting when
    /// it expires. Durable when it returns (one commit of the database, after the usage
    /// ledger's admitted changes are folded into it).
    ///
    /// ```
    /// use orgdb::{Db, NewOrganization, NewReservation, NewUser};
    /// let db = Db::in_memory()?;
    /// let ada = db.create_user(&NewUser { email: "ada@example.com".into(), name: "Ada".into() })?;
    /// let org = db.create_organization(&ada.id, &NewOrganization {
    ///     name: "Acme".into(),
    ///     plan: Some("free".into()), // 1 000 requests a month
    ///     ..Default::default()
    /// })?.organization.id;
    /// // Hold 800 before an expensive call…
    /// let hold = db.reserve_usage(&org, &NewReservation::new(800))?;
    /// assert!(db.check_quota(&org, 201).is_err()); // the hold counts at once
    /// // …and settle what it really cost: 650 are recorded, the other 150 return.
    /// let receipt = db.commit_reservation(&org, &hold.id, 650)?;
    /// assert_eq!(receipt.used, 650);
    /// assert_eq!(db.check_quota(&org, 350)?.used, 1_000);
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `quota_exceeded` when the period's total plus live holds and `count` would pass the
    /// bound (nothing is held); `not_found` (organization, resource); `validation_error`
    /// (`count` 1 to 2^53, `expires_in` 1 second to 1 day, `resource_id`).
    pub fn reserve_usage(&self, org: &str, new: &NewReservation) -> Result<Reservation> {
        let ctx = self.ctx();
        let org = org.trim();
        self.inner
            .ledger
            .fold_and_write(&*self.inner.store, &ctx, org, None, &|tx| {
                ops::reservations::reserve(tx, &ctx, org, new)
            })
    }

    /// Records `actual` requests of a reservation as usage of today (with its resource) and
    /// frees the hold, in one transaction. Up to the hold, `actual` is recorded whatever the
    /// limit says now; beyond it only as far as the quota allows. A hold that expired, or
    /// that was made in another quota period than today's, protects nothing: all of `actual`
    /// must fit. A repeated commit answers the receipt of
    /// the period with `duplicate: true` and records nothing (the reservation id is the
    /// usage's idempotency key, remembered 48 hours).
    ///
    /// # Errors
    /// `not_found` (organization; a reservation unknown or released), `quota_exceeded` (the
    /// part beyond the hold does not fit: nothing is recorded and the hold stays),
    /// `validation_error` (`actual` above 2^53).
    pub fn commit_reservation(&self, org: &str, id: &str, actual: u64) -> Result<UsageReceipt> {
        let ctx = self.ctx();
        let (org, id) = (org.trim(), id.trim());
        let key = Some((id, ctx.now.timestamp_micros()));
        self.inner
            .ledger
            .fold_and_write(&*self.inner.store, &ctx, org, key, &|tx| {
                ops::reservations::commit(tx, &ctx, org, id, actual)
            })
    }

    /// Gives a reservation's hold back without recording anything. Whether a live hold was
    /// freed: `false` for one unknown, already settled or expired (releasing twice is
    /// harmless).
    ///
    /// # Errors
    /// `not_found` (organization), `storage_error`.
    pub fn release_reservation(&self, org: &str, id: &str) -> Result<bool> {
        let ctx = self.ctx();
        let (org, id) = (org.trim(), id.trim());
        self.inner
            .ledger
            .fold_and_write(&*self.inner.store, &ctx, org, None, &|tx| {
                ops::reservations::release(tx, &ctx, org, id)
            })
    }
}
