-- The SQLite schema a careful engineer would write for the same product: the hand-written
-- side of the comparison harnesses (benches/compare.rs, bindings/python/bench.py).
CREATE TABLE IF NOT EXISTS users(
  id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
  created_at INTEGER NOT NULL, last_active INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orgs(
  id TEXT PRIMARY KEY, name TEXT NOT NULL, slug TEXT NOT NULL UNIQUE, external_id TEXT UNIQUE,
  description TEXT, plan TEXT NOT NULL,
  address_line1 TEXT, address_line2 TEXT, city TEXT, state TEXT, zipcode TEXT, country TEXT,
  settings TEXT NOT NULL, metadata TEXT NOT NULL,
  ov_mcps INTEGER, ov_api_keys INTEGER, ov_team_members INTEGER, ov_monthly_requests INTEGER,
  member_count INTEGER NOT NULL DEFAULT 0, mcps INTEGER NOT NULL DEFAULT 0,
  api_keys INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS memberships(
  org_id TEXT NOT NULL, user_id TEXT NOT NULL, id TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
  joined_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY(org_id, user_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_join ON memberships(org_id, joined_at, user_id);
CREATE INDEX IF NOT EXISTS members_by_role ON memberships(org_id, role, joined_at, user_id);
CREATE INDEX IF NOT EXISTS memberships_by_user ON memberships(user_id, org_id);
CREATE TABLE IF NOT EXISTS invitations(
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL, email TEXT NOT NULL, role TEXT NOT NULL,
  project_id TEXT, project_role TEXT, status TEXT NOT NULL, invited_by TEXT NOT NULL,
  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, accepted_at INTEGER,
  token_hash BLOB NOT NULL UNIQUE, lifetime_secs INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS invitations_by_org ON invitations(org_id, created_at, id);
CREATE UNIQUE INDEX IF NOT EXISTS pending_by_org_email ON invitations(org_id, email)
  WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS pending_by_email ON invitations(email) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS resources(
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
  created_at INTEGER NOT NULL, removed_at INTEGER);
CREATE INDEX IF NOT EXISTS resources_by_org ON resources(org_id, kind);
CREATE TABLE IF NOT EXISTS usage_month(
  org_id TEXT NOT NULL, month INTEGER NOT NULL, total INTEGER NOT NULL,
  PRIMARY KEY(org_id, month)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_reservations(
  org_id TEXT NOT NULL, id TEXT NOT NULL, count INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  PRIMARY KEY(org_id, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_day(
  org_id TEXT NOT NULL, day INTEGER NOT NULL, resource_id TEXT NOT NULL, requests INTEGER NOT NULL,
  PRIMARY KEY(org_id, day, resource_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit(
  seq INTEGER PRIMARY KEY, id TEXT NOT NULL, at INTEGER NOT NULL, actor TEXT NOT NULL,
  org_id TEXT, action TEXT NOT NULL, target TEXT NOT NULL, details TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_org ON audit(org_id, seq);
