// The Kotlin binding tests: both seeds' flows end to end against the native library.
// A plain main() runner (no JUnit on this machine): prints one line per test, then
// "N passed, N failed", and exits non-zero on any failure.

import dev.orgdb.*
import java.time.Duration
import java.time.Instant
import kotlin.io.path.createTempDirectory
import kotlin.system.exitProcess

val START: Instant = Instant.parse("2024-01-15T10:30:00Z")

// ---- a tiny test harness ----------------------------------------------------------------

class Failure(message: String) : AssertionError(message)

fun ensure(condition: Boolean, what: () -> String) {
    if (!condition) throw Failure(what())
}

fun <T> eq(actual: T, expected: T, what: String = "value") {
    if (actual != expected) throw Failure("$what: expected <$expected>, got <$actual>")
}

/** Runs [block], which must throw the orgdb error [E]; returns it. */
inline fun <reified E : OrgDbException> expect(block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw Failure("expected ${E::class.simpleName}, got $e")
    }
    throw Failure("expected ${E::class.simpleName}, nothing was thrown")
}

/** (code, message, details) of any orgdb error: the sealed hierarchy is exhaustive. */
fun OrgDbException.parts(): Triple<String, String, Map<String, String>> = when (this) {
    is OrgDbException.NotFound -> Triple(code, errorMessage, details)
    is OrgDbException.Forbidden -> Triple(code, errorMessage, details)
    is OrgDbException.Validation -> Triple(code, errorMessage, details)
    is OrgDbException.Conflict -> Triple(code, errorMessage, details)
    is OrgDbException.QuotaExceeded -> Triple(code, errorMessage, details)
    is OrgDbException.InvitationExpired -> Triple(code, errorMessage, details)
    is OrgDbException.Storage -> Triple(code, errorMessage, details)
    is OrgDbException.IncompatibleVersion -> Triple(code, errorMessage, details)
    is OrgDbException.Corrupted -> Triple(code, errorMessage, details)
}

// ---- fixtures -----------------------------------------------------------------------------

class Env {
    val clock = ManualClock(START)
    val db: OrgDb = OrgDb.inMemoryWith(Options(clock = clock))

    fun user(name: String): User =
        db.createUser(NewUser(email = name.lowercase().replace(" ", ".") + "@example.com", name = name))

    fun close() {
        db.close()
        clock.close()
    }
}

fun actor(user: User): Actor = Actor.User(user.id)

fun days(n: Long): Duration = Duration.ofDays(n)

/** Alice's "My Company" on the pro plan, as in seed 000. */
fun Env.company(): Pair<User, Organization> {
    val alice = user("Alice Smith")
    val created = db.createOrganization(
        alice.id,
        NewOrganization(
            name = "My Company",
            description = "Building cool stuff with AI",
            plan = "pro",
            settings = OrganizationSettings(pinProtection = true),
        ),
    )
    return alice to created.organization
}

// ---- seed 000 -----------------------------------------------------------------------------

fun createAndGetOrganization(env: Env) {
    val (alice, org) = env.company()
    ensure(org.id.startsWith("org_")) { "org id ${org.id}" }
    eq(org.slug, "my-company", "slug")
    eq(org.createdAt, START, "created_at")
    val details = env.db.getOrganization(actor(alice), org.id)
    eq(details.organization, org, "organization")
    eq(details.organization.settings.pinProtection, true, "pin_protection")
    eq(details.limits, Limits(mcps = 10uL, apiKeys = 10uL, teamMembers = 5uL, monthlyRequests = 50_000uL), "limits")
    eq(details.usage, Usage(mcps = 0uL, apiKeys = 0uL, teamMembers = 1uL, monthlyRequests = 0uL), "usage")
    eq(env.db.getOrganizationBySlug(actor(alice), "my-company").organization.id, org.id, "by slug")
}

fun inviteAcceptChangeRoleRemove(env: Env) {
    val (alice, org) = env.company()
    val owner = actor(alice)
    val created = env.db.createInvitation(owner, org.id, NewInvitation(email = "Bob@Example.com ", role = "member"))
    eq(created.inviteId, created.invitation.id, "invite_id")
    eq(created.token.length, 64, "token length")
    ensure(created.token in created.inviteUrl) { "invite url ${created.inviteUrl}" }
    eq(created.invitation.email, "bob@example.com", "email")
    eq(created.invitation.status, InvitationStatus.PENDING, "status")
    eq(created.invitation.expiresAt, START + days(7), "expires_at")

    val preview = env.db.getInvitationByToken(created.token)
    eq(preview.organizationName, "My Company", "preview org")
    eq(preview.inviterName, "Alice Smith", "inviter")

    env.clock.advanceSeconds(3600)
    val bob = env.user("Bob")
    val membership = env.db.acceptInvitation(created.token, bob.id)
    ensure(membership.id.startsWith("mem_")) { "membership id" }
    eq(membership.role, Role.MEMBER, "role")
    eq(membership.joinedAt, START + Duration.ofHours(1), "joined_at")
    eq(env.db.getInvitation(owner, org.id, created.inviteId).status, InvitationStatus.ACCEPTED, "accepted")

    val promoted = env.db.updateMemberRole(owner, org.id, bob.id, "admin")
    eq(promoted.role, Role.ADMIN, "promoted")
    env.db.touchUser(bob.id)
    eq(env.db.getMember(owner, org.id, bob.id).lastActive, env.db.now(), "last_active")

    val removed = env.db.removeMember(owner, org.id, bob.id)
    eq(removed, RemovedMember(removed = true, userId = bob.id, membershipId = membership.id), "removed")
    val err = expect<OrgDbException.NotFound> { env.db.getMember(owner, org.id, bob.id) }
    eq(err.code, "not_found", "code")
    eq(err.errorMessage, "Member not found", "message")
}

fun listMembersPagingAndRoleFilter(env: Env) {
    val (alice, org) = env.company()
    val owner = actor(alice)
    val roles = linkedMapOf("Bob" to "ADMIN", "Carol" to "viewer", "Dave" to "Member", "Erin" to "member")
    val users = mutableMapOf<String, User>()
    for ((name, role) in roles) {
        env.clock.advanceSeconds(60)
        users[name] = env.user(name)
        env.db.addMember(owner, org.id, users.getValue(name).id, role)
    }
    val all = env.db.listMembers(owner, org.id, MemberQuery())
    eq(all.pagination, Pagination(page = 1u, perPage = 20u, total = 5uL, totalPages = 1uL), "pagination")
    eq(all.data.map { it.name }, listOf("Alice Smith", "Bob", "Carol", "Dave", "Erin"), "order")
    eq(all.data.map { it.role }, listOf(Role.OWNER, Role.ADMIN, Role.VIEWER, Role.MEMBER, Role.MEMBER), "roles")
    eq(all.nextCursor, null, "last page cursor")

    val page2 = env.db.listMembers(owner, org.id, MemberQuery(page = 2u, perPage = 2u))
    eq(page2.pagination, Pagination(page = 2u, perPage = 2u, total = 5uL, totalPages = 3uL), "page 2")
    eq(page2.data.map { it.name }, listOf("Carol", "Dave"), "page 2 rows")

    val seen = mutableListOf<String>()
    var cursor: String? = null
    do {
        val page = env.db.listMembers(owner, org.id, MemberQuery(perPage = 2u, cursor = cursor))
        seen += page.data.map { it.id }
        cursor = page.nextCursor
    } while (cursor != null)
    eq(seen, all.data.map { it.id }, "keyset walk")

    val members = env.db.listMembers(owner, org.id, MemberQuery(role = "MEMBER"))
    eq(members.data.map { it.name }, listOf("Dave", "Erin"), "role filter")
    eq(members.pagination.total, 2uL, "filtered total")
}

fun seedErrors(env: Env) {
    val (alice, org) = env.company()
    val owner = actor(alice)
    val viewer = env.user("Victor")
    env.db.addMember(owner, org.id, viewer.id, "viewer")

    val forbidden = expect<OrgDbException.Forbidden> {
        env.db.updateOrganization(actor(viewer), org.id, OrganizationPatch(name = "Mine now"))
    }
    eq(forbidden.parts(), Triple("forbidden", "You don't have permission to perform this action", emptyMap()), "forbidden")
    eq(forbidden.httpStatus(), 403.toUShort(), "403")

    val notFound = expect<OrgDbException.NotFound> { env.db.getMember(owner, org.id, "user_nobody") }
    eq(notFound.parts(), Triple("not_found", "Member not found", emptyMap()), "not found")

    val invalid = expect<OrgDbException.Validation> { env.db.updateMemberRole(owner, org.id, viewer.id, "superuser") }
    eq(invalid.code, "validation_error", "code")
    eq(invalid.errorMessage, "Invalid role specified", "message")
    eq(invalid.details, mapOf("role" to "Must be one of: viewer, member, admin, owner"), "details")
    eq(invalid.httpStatus(), 422.toUShort(), "422")
    // Caught as the common base type too.
    try {
        env.db.getUser("user_missing")
        throw Failure("no error")
    } catch (e: OrgDbException) {
        eq(e.parts().first, "not_found", "base catch")
    }
    eq(env.db.getMember(owner, org.id, viewer.id).role, Role.VIEWER, "unchanged")
}

fun teamMembersQuota(env: Env) {
    val (alice, org) = env.company()
    val owner = actor(alice)
    for (name in listOf("Bob", "Carol")) env.db.addMember(owner, org.id, env.user(name).id, "member")
    for (email in listOf("dave@example.com", "erin@example.com")) {
        env.db.createInvitation(owner, org.id, NewInvitation(email = email))
    }
    eq(env.db.getOrganization(owner, org.id).usage.teamMembers, 5uL, "seats used")
    val err = expect<OrgDbException.QuotaExceeded> {
        env.db.createInvitation(owner, org.id, NewInvitation(email = "frank@example.com"))
    }
    eq(err.code, "quota_exceeded", "code")
    eq(err.details, mapOf("quota" to "team_members", "limit" to "5", "used" to "5", "requested" to "1"), "details")
}

fun usageReport(env: Env) {
    val (alice, org) = env.company()
    val owner = actor(alice)
    val weather = env.db.registerResource(owner, org.id, ResourceKind.MCP, "Weather API")
    val calculator = env.db.registerResource(owner, org.id, ResourceKind.MCP, "Calculator")
    env.clock.set(Instant.parse("2024-01-20T12:00:00Z"))
    val day15 = Instant.parse("2024-01-15T09:00:00Z")
    val day16 = Instant.parse("2024-01-16T09:00:00Z")
    val receipt = env.db.recordUsage(org.id, UsageEvent(count = 450uL, resourceId = weather.id, at = day15))
    eq(receipt, UsageReceipt(duplicate = false, used = 450uL, limit = 50_000uL, remaining = 49_550uL, periodStart = "2024-01-01", periodEnd = "2024-01-31"), "receipt")
    env.db.recordUsageBatch(
        org.id,
        listOf(
            UsageEvent(count = 7_550uL, resourceId = weather.id, at = day16),
            UsageEvent(count = 4_500uL, resourceId = calculator.id, at = day16),
        ),
    )
    val report = env.db.usageReport(owner, org.id, UsageQuery())
    eq(report.period, Period.MONTH, "period")
    eq(report.startDate, Instant.parse("2024-01-01T00:00:00Z"), "start_date")
    eq(report.endDate, Instant.parse("2024-01-31T23:59:59Z"), "end_date")
    eq(report.requests, RequestTotals(total = 12_500uL, limit = 50_000uL, percentage = 25uL), "requests")
    eq(report.byMcp.map { it.name to it.requests }, listOf("Weather API" to 8_000uL, "Calculator" to 4_500uL), "by_mcp")
    eq(report.byApiKey, emptyList<ApiKeyUsage>(), "by_api_key")
    eq(report.byDay.size, 31, "days")
    val byDay = report.byDay.associate { it.date to it.requests }
    eq(byDay["2024-01-15"], 450uL, "2024-01-15")
    eq(byDay["2024-01-16"], 12_050uL, "2024-01-16")

    val bad = expect<OrgDbException.Validation> {
        env.db.usageReport(owner, org.id, UsageQuery(startDate = "2024-13-01"))
    }
    ensure("start_date" in bad.details) { "details ${bad.details}" }
}

fun monthlyQuotaAndIdempotency(env: Env) {
    val (alice, org) = env.company()
    env.db.setLimitOverrides(Actor.System, org.id, LimitOverridesPatch(monthlyRequests = LimitUpdate.Set(Limit.Count(100uL))))
    eq(env.db.recordUsage(org.id, UsageEvent(count = 60uL, idempotencyKey = "req-1")).remaining, 40uL, "remaining")
    eq(env.db.recordUsage(org.id, UsageEvent(count = 60uL, idempotencyKey = "req-1")).duplicate, true, "duplicate")
    val err = expect<OrgDbException.QuotaExceeded> { env.db.recordUsage(org.id, UsageEvent(count = 50uL)) }
    eq(err.details, mapOf("quota" to "monthly_requests", "limit" to "100", "used" to "60", "requested" to "50"), "details")
    eq(err.httpStatus(), 429.toUShort(), "429")
    eq(env.db.checkQuota(org.id, 40uL).remaining, 0uL, "check_quota")
    val zero = expect<OrgDbException.Validation> { env.db.recordUsage(org.id, UsageEvent(count = 0uL)) }
    ensure("count" in zero.details) { "details ${zero.details}" }
    // An instant orgdb cannot store fails while crossing the boundary, as a validation error.
    val far = expect<OrgDbException.Validation> { env.db.recordUsage(org.id, UsageEvent(count = 1uL, at = Instant.MAX)) }
    eq(far.details.keys, setOf("at"), "out-of-range at")
    eq(env.db.getOrganization(actor(alice), org.id).usage.monthlyRequests, 60uL, "nothing recorded")
}

fun usageRecorder(env: Env) {
    val (_, org) = env.company()
    env.db.setLimitOverrides(Actor.System, org.id, LimitOverridesPatch(monthlyRequests = LimitUpdate.Set(Limit.Count(100uL))))
    val recorder = env.db.usageRecorder(org.id)
    eq(recorder.organizationId(), org.id, "organization_id")
    eq(recorder.record(null, 70uL).remaining, 30uL, "remaining")
    eq(env.db.recordUsage(org.id, UsageEvent(count = 20uL)).used, 90uL, "shared quota")
    val err = expect<OrgDbException.QuotaExceeded> { recorder.record(null, 11uL) }
    eq(err.details["used"], "90", "used")
    val zero = expect<OrgDbException.Validation> { recorder.record(null, 0uL) }
    eq(zero.details.keys, setOf("count"), "field")
    expect<OrgDbException.NotFound> { recorder.record("res_missing", 1uL) }
    recorder.flush()
    expect<OrgDbException.NotFound> { env.db.usageRecorder("org_missing") }
    recorder.close()
}

fun recorderBatch(env: Env) {
    val (alice, org) = env.company()
    env.db.setLimitOverrides(Actor.System, org.id, LimitOverridesPatch(monthlyRequests = LimitUpdate.Set(Limit.Count(1000uL))))
    val calc = env.db.registerResource(actor(alice), org.id, ResourceKind.MCP, "calc")
    val recorder = env.db.usageRecorder(org.id)
    // One count per event by default; null is an event outside any resource.
    eq(recorder.recordMany(listOf(calc.id, null, calc.id)).used, 3uL, "batch of 3")
    eq(recorder.recordMany(listOf(calc.id, null), listOf(500uL, 400uL)).remaining, 97uL, "counts")
    val over = expect<OrgDbException.QuotaExceeded> { recorder.recordMany(listOf(null, null), listOf(90uL, 8uL)) }
    eq(over.details["requested"], "98", "the batch's sum")
    expect<OrgDbException.NotFound> { recorder.recordMany(listOf(calc.id, "res_missing")) }
    val bad = expect<OrgDbException.Validation> { recorder.recordMany(listOf(null, null), listOf(1uL, 0uL)) }
    eq(bad.details.keys, setOf("counts[1]"), "count field")
    val empty = expect<OrgDbException.Validation> { recorder.recordMany(listOf(null, " ")) }
    eq(empty.details.keys, setOf("resource_ids[1]"), "id field")
    val short = expect<OrgDbException.Validation> { recorder.recordMany(listOf(null, null), listOf(1uL)) }
    eq(short.details.keys, setOf("counts"), "counts field")
    val none = expect<OrgDbException.Validation> { recorder.recordMany(listOf()) }
    eq(none.details.keys, setOf("resource_ids"), "empty batch")
    val broken = expect<OrgDbException.Validation> { recorder.recordMany(listOf("mcp_a\nmcp_b")) }
    eq(broken.details.keys, setOf("resource_ids"), "line break")
    eq(env.db.checkQuota(org.id, 1uL).used, 904uL, "nothing of a refused batch counted")
    val report = env.db.usageReport(actor(alice), org.id, UsageQuery())
    eq(report.byMcp.single().requests, 502uL, "per resource")
    recorder.close()
}

fun recorderAdd(env: Env) {
    val (alice, org) = env.company()
    env.db.setLimitOverrides(Actor.System, org.id, LimitOverridesPatch(monthlyRequests = LimitUpdate.Set(Limit.Count(1000uL))))
    val calc = env.db.registerResource(actor(alice), org.id, ResourceKind.MCP, "calc")
    val recorder = env.db.usageRecorder(org.id)
    val onCalc = recorder.forResource(calc.id)
    eq(onCalc.resourceId(), calc.id, "bound resource")
    eq(recorder.resourceId(), null, "no resource")
    eq(onCalc.add(600uL), 600uL, "total after")
    eq(recorder.add(300uL), 900uL, "total on no resource")
    val over = expect<OrgDbException.QuotaExceeded> { onCalc.add(101uL) }
    eq(over.details["used"], "900", "used")
    val zero = expect<OrgDbException.Validation> { onCalc.add(0uL) }
    eq(zero.details.keys, setOf("count"), "count field")
    val blank = expect<OrgDbException.Validation> { recorder.forResource(" ") }
    eq(blank.details.keys, setOf("resource_id"), "resource field")
    expect<OrgDbException.NotFound> { recorder.forResource("res_missing").add(1uL) }
    eq(env.db.checkQuota(org.id, 1uL).used, 901uL, "nothing refused counted")
    eq(env.db.usageReport(actor(alice), org.id, UsageQuery()).byMcp.single().requests, 600uL, "per resource")
    onCalc.close()
    recorder.close()
}

/// Call statuses are reused per thread: errors and results of threads that interleave never
/// mix, and a call after an error starts clean.
fun callStatusesPerThread(env: Env) {
    val (alice, org) = env.company()
    env.db.setLimitOverrides(Actor.System, org.id, LimitOverridesPatch(monthlyRequests = LimitUpdate.Set(Limit.Count(1_000_000uL))))
    val recorder = env.db.usageRecorder(org.id)
    val failures = java.util.concurrent.ConcurrentLinkedQueue<String>()
    val threads = (0 until 8).map { t ->
        Thread {
            try {
                for (i in 0 until 200) {
                    when ((i + t) % 3) {
                        0 -> {
                            val e = expect<OrgDbException.NotFound> { env.db.usageRecorder("org_missing_$t") }
                            if (e.code != "not_found") failures.add("thread $t: code ${e.code}")
                        }
                        1 -> {
                            val e = expect<OrgDbException.Validation> { recorder.add(0uL) }
                            if (e.details.keys != setOf("count")) failures.add("thread $t: ${e.details}")
                        }
                        else -> {
                            if (recorder.add(1uL) == 0uL) failures.add("thread $t: add answered 0")
                            if (env.db.getOrganization(actor(alice), org.id).organization.id != org.id) failures.add("thread $t: org")
                        }
                    }
                }
            } catch (e: Throwable) {
                failures.add("thread $t: $e")
            }
        }
    }
    threads.forEach { it.start() }
    threads.forEach { it.join() }
    eq(failures.toList(), listOf<String>(), "failures")
    // Each thread adds 1 on a third of its 200 calls (which third depends on its offset).
    val added = (0 until 8).sumOf { t -> (0 until 200).count { i -> (i + t) % 3 == 2 } }.toULong()
    eq(env.db.checkQuota(org.id, 1uL).used, added + 1uL, "every add counted once (and the 1 asked)")
    recorder.close()
}

fun rustBuffersPerThread(env: Env) {
    // Every argument and result crosses in a RustBuffer whose structure memory comes from a
    // per-thread ring (uniffi-bindgen/src/main.rs): threads making calls of up to four buffer
    // arguments, hundreds of times each (the ring turns over every 256 buffers), must each get
    // back exactly what they sent.
    val failures = java.util.concurrent.ConcurrentLinkedQueue<String>()
    val threads = (0 until 6).map { t ->
        Thread {
            try {
                val owner = env.user("Owner $t")
                val org = env.db.createOrganization(
                    owner.id,
                    NewOrganization(name = "Thread $t", description = "d".repeat(100 * (t + 1)), plan = "enterprise", city = "City $t"),
                ).organization
                for (i in 0 until 120) {
                    val name = "Thread $t call $i" + "é".repeat(i % 7)
                    val patch = OrganizationPatch(name = name, city = FieldUpdate.Set("City $t/$i"))
                    val updated = env.db.updateOrganization(actor(owner), org.id, patch)
                    if (updated.name != name || updated.city != "City $t/$i") failures.add("thread $t call $i: ${updated.name} / ${updated.city}")
                    if (i % 10 == 0) {
                        val member = env.user("Member $t $i")
                        val m = env.db.addMember(actor(owner), org.id, member.id, "viewer")
                        if (m.id != member.id) failures.add("thread $t call $i: member ${m.id}")
                    }
                    val read = env.db.getOrganization(actor(owner), org.id).organization
                    if (read.id != org.id || read.name != name || read.description != "d".repeat(100 * (t + 1))) {
                        failures.add("thread $t call $i: read ${read.id} ${read.name}")
                    }
                }
                val members = env.db.listMembers(actor(owner), org.id, MemberQuery(perPage = 100u))
                if (members.pagination.total != 13uL) failures.add("thread $t: ${members.pagination.total} members")
            } catch (e: Throwable) {
                failures.add("thread $t: $e")
            }
        }
    }
    threads.forEach { it.start() }
    threads.forEach { it.join() }
    eq(failures.toList(), listOf<String>(), "failures")
}

fun largeValuesCrossWhole(env: Env) {
    // An argument is lowered into a per-thread scratch block of 16 KiB when it fits, and as
    // UniFFI does when it does not (uniffi-bindgen/src/pointer_calls.rs): values on both sides
    // of that size, and results of any size, must cross unchanged.
    val (alice, org) = env.company()
    for (keys in listOf(1, 5, 6, 64)) {
        // 1 000 characters of up to three UTF-8 bytes each: 6 keys pass 16 KiB.
        val metadata = (0 until keys).associate { k -> "key$k" to "€é$k".repeat(333).take(1_000) }
        val patch = OrganizationPatch(metadata = metadata, city = FieldUpdate.Set("€".repeat(2_000).take(200)))
        val updated = env.db.updateOrganization(actor(alice), org.id, patch)
        eq(updated.metadata, metadata, "metadata of $keys keys, updated")
        eq(env.db.getOrganization(actor(alice), org.id).organization.metadata, metadata, "metadata of $keys keys, read")
    }
    // A string argument over the block, refused: the error names the field, nothing changes.
    val long = "ü".repeat(20_000)
    val e = expect<OrgDbException.Validation> {
        env.db.updateOrganization(actor(alice), org.id, OrganizationPatch(name = long))
    }
    eq(e.details.keys, setOf("name"), "the field named")
    ensure(env.db.getOrganization(actor(alice), org.id).organization.name != long) { "name changed" }
}

fun callsWhileLowering(env: Env) {
    // A list given as an argument may run the host's code while it is lowered (a view whose
    // elements are computed on access), and that code may call orgdb many times on the same
    // thread: the arguments lowered before it must cross unchanged (the Rust buffers that
    // carry them are reused per thread, never while one is still to be passed on).
    val (alice, org) = env.company()
    var nested = 0
    val computed = object : AbstractList<NewInvitation>() {
        override val size get() = 3
        override fun get(index: Int): NewInvitation {
            var email = ""
            repeat(100) { email = normalizeEmail(" Guest$index@Example.com "); nested++ }
            env.db.getOrganization(actor(alice), org.id)
            return NewInvitation(email = email, role = "viewer")
        }
    }
    val sent = env.db.createInvitations(actor(alice), org.id, computed)
    eq(sent.map { it.invitation.email }, (0 until 3).map { "guest$it@example.com" }, "invitations")
    ensure(nested >= 300) { "nested calls: $nested" }
    eq(env.db.listInvitations(actor(alice), org.id, InvitationQuery()).data.size, 3, "stored")
}

fun jsonVariants(env: Env) {
    val (alice, org) = env.company()
    val owner = actor(alice)
    val details = env.db.getOrganizationJson(owner, org.id)
    ensure(details.startsWith("{\"success\":true,\"data\":{\"id\":\"${org.id}\"")) { details }
    ensure("\"created_at\":\"2024-01-15T10:30:00Z\"" in details) { details }
    ensure("\"limits\":{\"mcps\":10,\"api_keys\":10,\"team_members\":5,\"monthly_requests\":50000}" in details) { details }
    val page = env.db.listMembersJson(owner, org.id, MemberQuery())
    ensure("\"email\":\"alice.smith@example.com\"" in page && "\"role\":\"owner\"" in page) { page }
    ensure("\"pagination\":{\"page\":1,\"per_page\":20,\"total\":1,\"total_pages\":1}" in page) { page }
    val report = env.db.usageReportJson(owner, org.id, UsageQuery(period = Period.DAY))
    ensure("\"period\":\"day\"" in report && "\"total\":0" in report) { report }
    // The same errors as the typed calls.
    val stranger = actor(env.user("Stranger"))
    expect<OrgDbException.Forbidden> { env.db.getOrganizationJson(stranger, org.id) }
    expect<OrgDbException.NotFound> { env.db.getOrganizationJson(owner, "org_missing") }
    val bad = expect<OrgDbException.Validation> { env.db.listMembersJson(owner, org.id, MemberQuery(role = "x")) }
    ensure("role" in bad.details) { "details ${bad.details}" }
    val range = expect<OrgDbException.Validation> { env.db.usageReportJson(owner, org.id, UsageQuery(startDate = "2024-13-01")) }
    ensure("start_date" in range.details) { "details ${range.details}" }
}

fun timestampsAreExact(env: Env) {
    val instants = listOf(
        "2024-01-15T10:30:00.000001Z", "2150-06-07T08:09:10.123457Z", "1969-12-31T23:59:59.999999Z",
        "1800-01-01T00:00:00.000001Z", "2300-01-01T00:00:00Z", "1600-01-01T00:00:00.5Z",
    )
    for ((i, text) in instants.withIndex()) {
        val at = Instant.parse(text)
        env.clock.set(at)
        eq(env.db.now(), at, "now $text")
        eq(env.user("T$i").createdAt, at, "created_at $text")
    }
    // A finer instant is rounded towards the past, before 1970 too.
    env.clock.set(Instant.parse("1969-12-31T23:59:59.9999995Z"))
    eq(env.db.now(), Instant.parse("1969-12-31T23:59:59.999999Z"), "floored before 1970")
    env.clock.set(Instant.parse("2024-01-15T10:30:00.0000019Z"))
    eq(env.db.now(), Instant.parse("2024-01-15T10:30:00.000001Z"), "floored after 1970")
}

fun updateOrganizationPatch(env: Env) {
    val (alice, org) = env.company()
    env.clock.advanceSeconds(5 * 24 * 3600)
    val updated = env.db.updateOrganization(
        actor(alice),
        org.id,
        OrganizationPatch(name = "New Company Name", description = FieldUpdate.Set("Updated description")),
    )
    eq(updated.name, "New Company Name", "name")
    eq(updated.description, "Updated description", "description")
    eq(updated.slug, "my-company", "slug kept")
    eq(updated.updatedAt, START + days(5), "updated_at")
    val cleared = env.db.updateOrganization(actor(alice), org.id, OrganizationPatch(description = FieldUpdate.Clear))
    eq(cleared.description, null, "cleared")
}

// ---- seed 001 -----------------------------------------------------------------------------

fun organizationsWithAddressAndMemberships(env: Env) {
    val owner = env.user("Olivia Owner")
    val created = env.db.createOrganization(
        owner.id,
        NewOrganization(
            name = "My Organization",
            addressLine1 = "123 Main St",
            city = "San Francisco",
            state = "CA",
            zipcode = "94105",
            country = "USA",
        ),
    )
    val org = created.organization
    eq(listOf(org.addressLine1, org.city, org.state, org.zipcode, org.country), listOf("123 Main St", "San Francisco", "CA", "94105", "USA"), "address")
    eq(created.membership.role, Role.OWNER, "owner")
    val listed = env.db.listOrganizationsForUser(owner.id)
    eq(listed.map { it.organization.id to it.membership.role }, listOf(org.id to Role.OWNER), "listed")

    val ownerActor = actor(owner)
    env.db.setPlan(ownerActor, org.id, "team")
    val project = env.db.createProject(ownerActor, org.id, NewProject(name = "Website"))
    val invited = env.db.createInvitation(
        ownerActor,
        org.id,
        NewInvitation(email = "pat@example.com", role = "MEMBER", projectId = project.id, projectRole = "ADMIN"),
    )
    eq(invited.invitation.projectRole, Role.ADMIN, "project role")
    val page = env.db.listInvitations(ownerActor, org.id, InvitationQuery(status = "PENDING"))
    eq(page.data.map { it.id }, listOf(invited.inviteId), "pending list")

    val pat = env.user("Pat")
    val membership = env.db.acceptInvitation(invited.token, pat.id)
    eq(env.db.listProjectMembers(ownerActor, org.id, project.id).map { it.id to it.role }, listOf(pat.id to Role.ADMIN), "project members")
    val updated = env.db.updateMemberRole(ownerActor, org.id, membership.id, "ADMIN")
    eq(updated.role, Role.ADMIN, "by membership id")
    env.db.removeMember(ownerActor, org.id, membership.id)
    expect<OrgDbException.NotFound> { env.db.removeMember(ownerActor, org.id, membership.id) }

    val again = env.db.createInvitation(ownerActor, org.id, NewInvitation(email = "sam@example.com"))
    val dup = expect<OrgDbException.Conflict> {
        env.db.createInvitation(ownerActor, org.id, NewInvitation(email = "SAM@example.com"))
    }
    eq(dup.details["invitation_id"], again.inviteId, "duplicate names the invitation")
    eq(env.db.revokeInvitation(ownerActor, org.id, again.inviteId).status, InvitationStatus.REVOKED, "revoked")

    val patched = env.db.updateOrganization(
        ownerActor,
        org.id,
        OrganizationPatch(addressLine1 = FieldUpdate.Clear, city = FieldUpdate.Set("Oakland")),
    )
    eq(patched.addressLine1, null, "cleared line 1")
    eq(patched.city, "Oakland", "city")

    env.db.deleteOrganization(ownerActor, org.id)
    expect<OrgDbException.NotFound> { env.db.getOrganization(ownerActor, org.id) }
    val log = env.db.auditLog(Actor.System, org.id, 0uL, 1000u)
    eq(log.last().action, "organization.deleted", "last audit event")
    eq(log.map { it.seq }, log.map { it.seq }.sorted(), "audit order")
}

// ---- the clock and files ------------------------------------------------------------------

fun invitationExpiry(env: Env) {
    val owner = env.user("Owner")
    val org = env.db.createOrganization(owner.id, NewOrganization(name = "Expiring")).organization
    val created = env.db.createInvitation(actor(owner), org.id, NewInvitation(email = "late@example.com", expiresIn = Duration.ofHours(1)))
    eq(created.invitation.expiresAt, START + Duration.ofHours(1), "expires_at")
    val late = env.user("Late")
    env.clock.advanceSeconds(3599)
    eq(env.db.getInvitationByToken(created.token).status, InvitationStatus.PENDING, "still pending")
    env.clock.advanceSeconds(1)
    eq(env.clock.now(), START + Duration.ofHours(1), "clock")
    eq(env.db.getInvitationByToken(created.token).status, InvitationStatus.EXPIRED, "expired")
    val err = expect<OrgDbException.InvitationExpired> { env.db.acceptInvitation(created.token, late.id) }
    eq(err.parts().first, "invitation_expired", "code")
    eq(err.details, mapOf("invitation_id" to created.inviteId), "details")
    eq(err.httpStatus(), 410.toUShort(), "410")
    val resent = env.db.resendInvitation(actor(owner), org.id, created.inviteId)
    expect<OrgDbException.NotFound> { env.db.acceptInvitation(created.token, late.id) }
    eq(env.db.acceptInvitation(resent.token, late.id).userId, late.id, "accepted after resend")
}

fun reopenFromFile(env: Env) {
    val dir = createTempDirectory("orgdb-kotlin")
    val path = dir.resolve("orgs.redb").toString()
    val clock = env.clock
    val (owner, org) = OrgDb.openWith(path, Options(clock = clock)).use { db ->
        val owner = db.createUser(NewUser(email = "o@example.com", name = "Owner"))
        val org = db.createOrganization(owner.id, NewOrganization(name = "Durable", plan = "pro")).organization
        val member = db.createUser(NewUser(email = "m@example.com", name = "Member"))
        db.addMember(actor(owner), org.id, member.id, "viewer")
        db.recordUsage(org.id, UsageEvent(count = 1234uL, idempotencyKey = "once"))
        val busy = expect<OrgDbException.Storage> { OrgDb.open(path) }
        eq(busy.code, "storage_error", "in use")
        owner to org
    }
    OrgDb.openWith(path, Options(clock = clock)).use { db ->
        val details = db.getOrganization(actor(owner), org.id)
        eq(details.organization, org, "organization survives")
        eq(details.usage.teamMembers, 2uL, "members survive")
        eq(details.usage.monthlyRequests, 1234uL, "usage survives")
        eq(db.recordUsage(org.id, UsageEvent(count = 5uL, idempotencyKey = "once")).duplicate, true, "key survives")
        val report = db.check()
        ensure(report.ok) { "check: ${report.problems}" }
    }
    dir.toFile().deleteRecursively()
}

fun exportImportWithProgress(env: Env) {
    val (_, org) = env.company()
    val dir = createTempDirectory("orgdb-kotlin")
    val dump = dir.resolve("dump.jsonl").toString()
    val lines = env.db.exportJsonl(dump)

    // The callback hears every record, in order.
    val seen = mutableListOf<ULong>()
    val counting = object : ImportProgress {
        override fun onProgress(records: ULong) {
            seen.add(records)
        }
    }
    OrgDb.inMemoryWith(Options(clock = env.clock)).use { fresh ->
        eq(fresh.importJsonl(dump, 2uL, counting).records, lines, "records imported")
        eq(seen, (1uL..lines).toList(), "progress")
        eq(fresh.getOrganization(Actor.System, org.id).organization, org, "organization imported")
    }

    // Calls made from the callback, on the import's thread, one of them failing each time:
    // the import's own status and result stay its own (native calls pass their buffers and
    // status through per-thread memory, uniffi-bindgen/src/pointer_calls.rs).
    val nested = object : ImportProgress {
        override fun onProgress(records: ULong) {
            expect<OrgDbException.NotFound> { env.db.getOrganization(Actor.System, "org_missing_$records") }
            eq(env.db.getOrganization(Actor.System, org.id).organization.id, org.id, "nested read")
        }
    }
    OrgDb.inMemoryWith(Options(clock = env.clock)).use { fresh ->
        val report = fresh.importJsonl(dump, 2uL, nested)
        eq(report.records, lines, "records imported beside nested calls")
        eq(fresh.getOrganization(Actor.System, org.id).organization, org, "organization imported")
    }

    // Throwing from it stops the import; with no batches nothing is written.
    val stopping = object : ImportProgress {
        override fun onProgress(records: ULong) {
            if (records == 3uL) throw IllegalStateException("operator said stop")
        }
    }
    OrgDb.inMemoryWith(Options(clock = env.clock)).use { fresh ->
        val stopped = expect<OrgDbException.Storage> { fresh.importJsonl(dump, null, stopping) }
        ensure(stopped.errorMessage.contains("operator said stop")) { stopped.errorMessage }
        ensure(fresh.stats().all { it.table == "meta" || it.rows == 0uL }) { "rows written: ${fresh.stats()}" }
    }
    dir.toFile().deleteRecursively()
}

/** A PostgreSQL URL instead of a file: two handles (as two app servers would hold) share one
 *  database, its rules and its exact quotas. Needs ORGDB_TEST_POSTGRES_URL (scripts/test-all.sh
 *  starts a server with scripts/pg-server.sh); without it the runner reports it skipped. */
fun postgresShared(env: Env) {
    val server = System.getenv("ORGDB_TEST_POSTGRES_URL") ?: throw Skip("no PostgreSQL server")
    val url = "$server?schema=kt_${ProcessHandle.current().pid()}"
    OrgDb.open(url).use { first ->
        OrgDb.open(url).use { second ->
            val owner = first.createUser(NewUser(email = "o@example.com", name = "Owner"))
            val org = first.createOrganization(owner.id, NewOrganization(name = "Shared", plan = "free")).organization
            eq(second.getOrganization(actor(owner), org.id).organization, org, "seen by the other handle")
            // free: 3 seats, filled from both handles; the next add is refused by either.
            for ((db, name) in listOf(first to "a", second to "b")) {
                val u = db.createUser(NewUser(email = "$name@example.com", name = name))
                db.addMember(actor(owner), org.id, u.id, "member")
            }
            val late = second.createUser(NewUser(email = "late@example.com", name = "Late"))
            val full = expect<OrgDbException.QuotaExceeded> { first.addMember(actor(owner), org.id, late.id, "member") }
            eq(full.details["quota"], "team_members", "quota named")
            first.setEntitlementOverride(Actor.System, org.id, "sso", EntitlementValue.Feature(enabled = true))
            eq(second.entitlement(actor(owner), org.id, "sso").source, EntitlementSource.OVERRIDE, "override shared")
            first.recordUsage(org.id, UsageEvent(count = 600uL, idempotencyKey = "k"))
            eq(second.recordUsage(org.id, UsageEvent(count = 600uL, idempotencyKey = "k")).duplicate, true, "key shared")
            expect<OrgDbException.QuotaExceeded> { second.recordUsage(org.id, UsageEvent(count = 401uL)) }
            eq(second.recordUsage(org.id, UsageEvent(count = 400uL)).used, 1000uL, "exact total")
            val report = second.check()
            ensure(report.ok) { "check: ${report.problems}" }
        }
    }
}

// ---- members at scale ---------------------------------------------------------------------

fun permissionsFollowTheMatrix(env: Env) {
    val (alice, org) = env.company()
    val bob = env.user("Bob")
    env.db.addMember(actor(alice), org.id, bob.id, "admin")
    val mine = env.db.permissions(actor(alice), org.id)
    eq(mine.role, Role.OWNER, "owner role")
    ensure(Action.DELETE_ORGANIZATION in mine.actions) { "owner may delete: ${mine.actions}" }
    ensure(Action.LEAVE_ORGANIZATION !in mine.actions) { "the only owner may not leave" }
    val bobs = env.db.permissions(actor(bob), org.id)
    eq(bobs.grantableRoles, listOf(Role.VIEWER, Role.MEMBER, Role.ADMIN), "admin grants")
    ensure(Action.CHANGE_PLAN !in bobs.actions) { "an admin may not change the plan" }
    eq(env.db.permissions(Actor.System, org.id).role, null, "system role")
    val stranger = env.user("Stranger")
    expect<OrgDbException.Forbidden> { env.db.permissions(actor(stranger), org.id) }
}

fun deactivateAndReactivate(env: Env) {
    val (alice, org) = env.company()
    val owner = actor(alice)
    val bob = env.user("Bob")
    env.db.addMember(owner, org.id, bob.id, "member")
    eq(env.db.getOrganization(owner, org.id).usage.teamMembers, 2uL, "seats before")
    val off = env.db.deactivateMember(owner, org.id, bob.id)
    eq(off.status, MemberStatus.DEACTIVATED, "status")
    ensure(off.deactivatedAt != null) { "deactivated_at set" }
    eq(env.db.getOrganization(owner, org.id).usage.teamMembers, 1uL, "seats after")
    expect<OrgDbException.Forbidden> { env.db.getOrganization(actor(bob), org.id) }
    val gone = env.db.listMembers(owner, org.id, MemberQuery(status = "deactivated"))
    eq(gone.data.map { it.id }, listOf(bob.id), "deactivated list")
    eq(env.db.listMembers(owner, org.id, MemberQuery()).pagination.total, 1uL, "active total")
    eq(env.db.listMembers(owner, org.id, MemberQuery(status = "all")).pagination.total, 2uL, "all total")
    expect<OrgDbException.Validation> { env.db.listMembers(owner, org.id, MemberQuery(status = "nope")) }
    expect<OrgDbException.Conflict> { env.db.deactivateMember(owner, org.id, alice.id) }
    // Search: a prefix of the email, the name or a later word of it, with the status filter.
    val ada = env.db.createUser(NewUser(email = "ada@example.com", name = "Ada Lovelace"))
    env.db.addMember(owner, org.id, ada.id, "viewer")
    eq(env.db.listMembers(owner, org.id, MemberQuery(search = "LOVE")).data.map { it.id }, listOf(ada.id), "search by a later word")
    eq(env.db.listMembers(owner, org.id, MemberQuery(search = "bob")).pagination.total, 0uL, "a deactivated member is not an active hit")
    eq(env.db.listMembers(owner, org.id, MemberQuery(search = "bob", status = "all")).data.map { it.id }, listOf(bob.id), "found under all")
    val on = env.db.reactivateMember(owner, org.id, bob.id)
    eq(on.status, MemberStatus.ACTIVE, "reactivated")
    eq(on.deactivatedAt, null, "deactivated_at cleared")
    env.db.getOrganization(actor(bob), org.id)
}

fun ownedOrganizationCap(env: Env) {
    val capped = OrgDb.inMemoryWith(Options(clock = env.clock, maxOwnedOrganizations = 1uL))
    try {
        val made = capped.createUserWithOrganization(
            NewUser(email = "ada@example.com", name = "Ada"),
            NewOrganization(name = "Analytical Engines"),
        )
        eq(made.membership.role, Role.OWNER, "owner")
        val err = expect<OrgDbException.QuotaExceeded> {
            capped.createOrganization(made.user.id, NewOrganization(name = "Second"))
        }
        eq(err.details["quota"], "owned_organizations", "quota")
    } finally {
        capped.close()
    }
}

fun systemListsAndUserProjects(env: Env) {
    val (alice, org) = env.company()
    val bob = env.user("Bob")
    env.db.addMember(actor(alice), org.id, bob.id, "member")
    val orgs = env.db.listOrganizations(Actor.System, ListQuery(search = "my comp"))
    eq(orgs.data.map { it.id }, listOf(org.id), "organization search")
    val users = env.db.listUsers(Actor.System, ListQuery(perPage = 1u))
    eq(users.pagination.total, 2uL, "users total")
    val next = env.db.listUsers(Actor.System, ListQuery(perPage = 1u, cursor = users.nextCursor))
    eq(next.data.map { it.id }, listOf(bob.id), "second page by cursor")
    expect<OrgDbException.Forbidden> { env.db.listUsers(actor(alice), ListQuery()) }
    val project = env.db.createProject(actor(alice), org.id, NewProject(name = "Apollo"))
    env.db.addProjectMember(actor(alice), org.id, project.id, bob.id, "admin")
    val mine = env.db.listUserProjects(actor(bob), org.id, bob.id)
    eq(mine.map { it.project.name to it.projectRole }, listOf("Apollo" to Role.ADMIN), "projects of bob")
}

fun correctUsage(env: Env) {
    val (_, org) = env.company()
    env.db.recordUsage(org.id, UsageEvent(count = 10uL))
    val fixed = env.db.correctUsage(
        Actor.System, org.id,
        UsageCorrection(date = "2024-01-15", delta = -4L, idempotencyKey = "c1", reason = "double count"),
    )
    eq(listOf(fixed.before, fixed.after, fixed.monthTotal), listOf(10uL, 6uL, 6uL), "before, after, month")
    eq(env.db.correctUsage(Actor.System, org.id, UsageCorrection(date = "2024-01-15", delta = -4L, idempotencyKey = "c1")).duplicate, true, "duplicate")
    expect<OrgDbException.Validation> {
        env.db.correctUsage(Actor.System, org.id, UsageCorrection(date = "2024-01-15", delta = -7L))
    }
}

// ---- entitlements -------------------------------------------------------------------------

/** Plan features and named limits, an override per organization, and the projects limit. */
fun entitlements(env: Env) {
    val db = OrgDb.inMemoryWith(
        Options(
            clock = env.clock,
            plans = mapOf("starter" to Limits(teamMembers = 5uL), "scale" to Limits()),
            planEntitlements = mapOf(
                "starter" to PlanEntitlements(features = listOf("audit_export"), limits = mapOf("projects" to 2uL)),
                "scale" to PlanEntitlements(features = listOf("sso"), limits = mapOf("projects" to null)),
            ),
            defaultPlan = "starter",
        ),
    )
    db.use {
        val owner = db.createUser(NewUser(email = "owner@example.com", name = "Owner"))
        val org = db.createOrganization(owner.id, NewOrganization(name = "Acme")).organization
        val audit = db.entitlement(actor(owner), org.id, "audit_export")
        eq(audit.kind, EntitlementKind.FEATURE, "kind")
        eq(audit.hasAccess, true, "audit_export from the plan")
        eq(audit.source, EntitlementSource.PLAN, "source")
        eq(db.entitlement(actor(owner), org.id, "sso").hasAccess, false, "sso is another plan's")
        val on = db.setEntitlementOverride(Actor.System, org.id, "sso", EntitlementValue.Feature(enabled = true))
        eq(on.source, EntitlementSource.OVERRIDE, "override wins")
        eq(db.entitlement(actor(owner), org.id, "sso"), on, "read back")
        for (name in listOf("One", "Two")) db.createProject(actor(owner), org.id, NewProject(name = name))
        val full = expect<OrgDbException.QuotaExceeded> { db.createProject(actor(owner), org.id, NewProject(name = "Three")) }
        eq(full.details["quota"], "projects", "quota named")
        val projects = db.entitlement(actor(owner), org.id, "projects")
        eq(Triple(projects.limit, projects.used, projects.hasAccess), Triple(2uL, 2uL, false), "projects at the limit")
        db.setEntitlementOverride(Actor.System, org.id, "projects", EntitlementValue.Limit(limit = null))
        db.createProject(actor(owner), org.id, NewProject(name = "Three"))
        eq(db.entitlements(actor(owner), org.id).map { it.name }, listOf("mcps", "api_keys", "team_members", "monthly_requests", "audit_export", "projects", "sso"), "list")
        val bad = expect<OrgDbException.Validation> { db.entitlement(actor(owner), org.id, "Not A Name") }
        eq(bad.details.keys, setOf("name"), "field named")
        val wrongKind = expect<OrgDbException.Validation> {
            db.setEntitlementOverride(Actor.System, org.id, "sso", EntitlementValue.Limit(limit = 1uL))
        }
        eq(wrongKind.details.keys, setOf("value"), "field named")
        expect<OrgDbException.Forbidden> {
            db.setEntitlementOverride(actor(owner), org.id, "sso", null)
        }
        ensure(db.check().ok) { "check" }
    }
}

/** A soft monthly limit admits past the limit up to its overage cap and marks receipts over. */
fun softLimits(env: Env) {
    val db = OrgDb.inMemoryWith(
        Options(
            clock = env.clock,
            plans = mapOf("metered" to Limits(monthlyRequests = 100uL)),
            planEntitlements = mapOf("metered" to PlanEntitlements(softLimits = mapOf("monthly_requests" to 50uL))),
            defaultPlan = "metered",
        ),
    )
    db.use {
        val owner = db.createUser(NewUser(email = "owner@example.com", name = "Owner"))
        val org = db.createOrganization(owner.id, NewOrganization(name = "Acme")).organization
        val within = db.recordUsage(org.id, UsageEvent(count = 100uL))
        eq(Triple(within.used, within.over, within.overage), Triple(100uL, false, 0uL), "within the limit")
        val over = db.recordUsage(org.id, UsageEvent(count = 30uL))
        eq(Triple(over.used, over.over, over.overage), Triple(130uL, true, 30uL), "past the limit")
        val capped = expect<OrgDbException.QuotaExceeded> { db.recordUsage(org.id, UsageEvent(count = 21uL)) }
        eq(capped.details["limit"], "150", "the cap is hard")
        val quota = db.entitlement(actor(owner), org.id, "monthly_requests")
        eq(quota.enforcement, Enforcement.Soft(overageCap = 50uL), "enforcement")
    }
}

/** A quota reset on a billing anchor (clamped to short months), and a change of rule. */
fun quotaPeriods(env: Env) {
    env.clock.set(Instant.parse("2024-02-10T12:00:00Z"))
    val db = OrgDb.inMemoryWith(
        Options(clock = env.clock, plans = mapOf("metered" to Limits(monthlyRequests = 10uL)), defaultPlan = "metered"),
    )
    db.use {
        val owner = db.createUser(NewUser(email = "owner@example.com", name = "Owner"))
        val org = db.createOrganization(owner.id, NewOrganization(name = "Acme")).organization
        eq(db.billingPeriod(actor(owner), org.id).rule, QuotaPeriod.CalendarMonth, "default rule")
        val period = db.setBillingAnchor(Actor.System, org.id, QuotaPeriod.Anchored(anchor = "2023-01-31"))
        eq(Pair(period.periodStart, period.periodEnd), Pair("2024-01-31", "2024-02-28"), "clamped period")
        val full = db.recordUsage(org.id, UsageEvent(count = 10uL))
        eq(Pair(full.used, full.periodStart), Pair(10uL, "2024-01-31"), "receipt speaks of the period")
        expect<OrgDbException.QuotaExceeded> { db.recordUsage(org.id, UsageEvent(count = 1uL)) }
        env.clock.set(Instant.parse("2024-02-29T00:00:00Z"))
        val fresh = db.recordUsage(org.id, UsageEvent(count = 2uL))
        eq(Triple(fresh.used, fresh.periodStart, fresh.periodEnd), Triple(2uL, "2024-02-29", "2024-03-30"), "rolled over")
        val daily = db.setBillingAnchor(Actor.System, org.id, QuotaPeriod.Day)
        eq(daily.periodStart, "2024-02-29", "a day")
        eq(db.getOrganization(actor(owner), org.id).usage.monthlyRequests, 2uL, "nothing lost")
        expect<OrgDbException.Forbidden> { db.setBillingAnchor(actor(owner), org.id, QuotaPeriod.Week) }
        val bad = expect<OrgDbException.Validation> {
            db.setBillingAnchor(Actor.System, org.id, QuotaPeriod.Anchored(anchor = "1800-01-01"))
        }
        eq(bad.details.keys, setOf("anchor"), "field named")
        ensure(db.check().ok) { "check" }
    }
}

fun usageAlerts(env: Env) {
    env.clock.set(Instant.parse("2024-03-10T12:00:00Z"))
    val db = OrgDb.inMemoryWith(
        Options(clock = env.clock, plans = mapOf("metered" to Limits(monthlyRequests = 100uL)), defaultPlan = "metered"),
    )
    db.use {
        val owner = db.createUser(NewUser(email = "owner@example.com", name = "Owner"))
        val org = db.createOrganization(owner.id, NewOrganization(name = "Acme")).organization
        val defaults = db.usageAlerts(actor(owner), org.id)
        ensure(defaults.defaultThresholds) { "defaults" }
        eq(defaults.alerts.map { it.thresholdPercent }, listOf(80u, 100u), "80 and 100")
        val set = db.setUsageAlerts(actor(owner), org.id, listOf(90u, 50u))
        eq(set.alerts.map { Pair(it.thresholdPercent, it.mark) }, listOf(Pair(50u, 50uL), Pair(90u, 90uL)), "ascending, with marks")
        db.recordUsage(org.id, UsageEvent(count = 60uL))
        val now = db.usageAlerts(actor(owner), org.id)
        ensure(now.alerts[0].firedThisPeriod) { "50 % announced" }
        eq(now.alerts[0].firedPeriodStart, "2024-03-01", "in March")
        ensure(!now.alerts[1].reached) { "90 % not reached" }
        val announced = db.auditLog(Actor.System, org.id, 0uL, 100u).filter { it.action == "usage.threshold" }
        eq(announced.size, 1, "one event")
        val bad = expect<OrgDbException.Validation> { db.setUsageAlerts(actor(owner), org.id, listOf(50u, 0u)) }
        eq(bad.details.keys, setOf("thresholds[1]"), "field named")
        eq(db.setUsageAlerts(actor(owner), org.id, listOf()).alerts.size, 0, "silenced")
        ensure(db.setUsageAlerts(Actor.System, org.id, null).defaultThresholds) { "back to the defaults" }
        ensure(db.check().ok) { "check" }
    }
}

fun usageReservations(env: Env) {
    val db = OrgDb.inMemoryWith(
        Options(clock = env.clock, plans = mapOf("metered" to Limits(monthlyRequests = 100uL)), defaultPlan = "metered"),
    )
    db.use {
        val owner = db.createUser(NewUser(email = "owner@example.com", name = "Owner"))
        val org = db.createOrganization(owner.id, NewOrganization(name = "Acme")).organization
        val hold = db.reserveUsage(org.id, NewReservation(count = 60uL))
        ensure(hold.id.startsWith("rsv_")) { "rsv_ id" }
        eq(java.time.Duration.between(hold.createdAt, hold.expiresAt), java.time.Duration.ofMinutes(5), "default lifetime")
        expect<OrgDbException.QuotaExceeded> { db.checkQuota(org.id, 41uL) }
        db.recordUsage(org.id, UsageEvent(count = 40uL))
        val receipt = db.commitReservation(org.id, hold.id, 45uL)
        eq(Pair(receipt.used, receipt.duplicate), Pair(85uL, false), "committed")
        ensure(db.commitReservation(org.id, hold.id, 45uL).duplicate) { "a repeat is a duplicate" }
        val short = db.reserveUsage(org.id, NewReservation(count = 15uL, expiresIn = java.time.Duration.ofSeconds(30)))
        ensure(db.releaseReservation(org.id, short.id)) { "released" }
        ensure(!db.releaseReservation(org.id, short.id)) { "released once" }
        expect<OrgDbException.NotFound> { db.commitReservation(org.id, short.id, 1uL) }
        val bad = expect<OrgDbException.Validation> { db.reserveUsage(org.id, NewReservation(count = 0uL)) }
        eq(bad.details.keys, setOf("count"), "field named")
        ensure(db.check().ok) { "check" }
    }
}

/** Thrown by a test that cannot run here. */
class Skip(reason: String) : Exception(reason)

// ---- the runner ---------------------------------------------------------------------------

fun main() {
    val tests: List<Pair<String, (Env) -> Unit>> = listOf(
        "seed 000: create and get organization" to ::createAndGetOrganization,
        "seed 000: invite, accept, change role, remove" to ::inviteAcceptChangeRoleRemove,
        "seed 000: list members, pages, cursor, role filter" to ::listMembersPagingAndRoleFilter,
        "seed 000: forbidden, not_found, validation_error" to ::seedErrors,
        "seed 000: team_members quota" to ::teamMembersQuota,
        "seed 000: usage report" to ::usageReport,
        "seed 000: update organization (PATCH)" to ::updateOrganizationPatch,
        "usage: monthly quota and idempotency" to ::monthlyQuotaAndIdempotency,
        "usage: a recorder shares the monthly quota" to ::usageRecorder,
        "seed 001: address, memberships, project invitations, delete" to ::organizationsWithAddressAndMemberships,
        "manual clock: invitation expiry and resend" to ::invitationExpiry,
        "file: reopen a database" to ::reopenFromFile,
        "file: export, import with progress and stop" to ::exportImportWithProgress,
        "postgres: two handles share one database and its quotas" to ::postgresShared,
        "members: permissions follow the matrix" to ::permissionsFollowTheMatrix,
        "members: deactivate, reactivate and search" to ::deactivateAndReactivate,
        "orgs: owned-organization cap, sign-up in one call" to ::ownedOrganizationCap,
        "lists: organizations, users, projects of a user" to ::systemListsAndUserProjects,
        "usage: corrections" to ::correctUsage,
        "speed: a recorder batch, whole or not at all" to ::recorderBatch,
        "speed: a resource recorder's add, a number in and out" to ::recorderAdd,
        "speed: call statuses reused per thread, never mixed" to ::callStatusesPerThread,
        "speed: Rust buffers' memory reused per thread, never mixed" to ::rustBuffersPerThread,
        "speed: values larger than the scratch block cross whole" to ::largeValuesCrossWhole,
        "speed: calls made while an argument is lowered" to ::callsWhileLowering,
        "speed: JSON variants of the read calls" to ::jsonVariants,
        "speed: timestamps cross exactly" to ::timestampsAreExact,
        "entitlements: features, overrides, the projects limit" to ::entitlements,
        "entitlements: soft limits with an overage cap" to ::softLimits,
        "entitlements: quota periods and the billing anchor" to ::quotaPeriods,
        "entitlements: usage alerts" to ::usageAlerts,
        "entitlements: usage reservations" to ::usageReservations,
    )
    var passed = 0
    var failed = 0
    for ((name, test) in tests) {
        var env: Env? = null
        try {
            env = Env()
            test(env)
            passed++
            println("PASS  $name")
        } catch (e: Skip) {
            println("SKIP  $name: ${e.message}")
        } catch (e: Throwable) {
            failed++
            println("FAIL  $name: $e")
            e.printStackTrace(System.out)
        } finally {
            env?.close()
        }
    }
    println("$passed passed, $failed failed")
    exitProcess(if (failed == 0 && passed > 0) 0 else 1)
}
