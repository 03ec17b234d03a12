// The Kotlin side of the bindings benchmark: the calls of benches/boundary.rs through the
// Kotlin binding (JNA), on the same data. bindings/kotlin/bench.sh runs both and prints the
// table. Prints one line per workload and round: `RATE <workload> <calls or events per second>`,
// after a warm-up of each workload (the JIT compiles the generated code first).
//
//   java ... BenchKt [--rounds N] [--seconds S] [--workload a,b]

import dev.orgdb.*
import java.time.Instant
import kotlin.io.path.createTempDirectory

const val MEMBERS = 31
const val MCPS = 10
const val BATCH = 1000

class Fixture(path: String) {
    val clock = ManualClock(Instant.parse("2026-01-31T12:00:00Z"))
    val db: OrgDb = OrgDb.openWith(path, Options(clock = clock))
    val owner: Actor
    val org: String
    val mcps = mutableListOf<String>()

    init {
        val first = db.createUser(NewUser(email = "owner@example.com", name = "Olivia Owner"))
        owner = Actor.User(first.id)
        org = db.createOrganization(first.id, NewOrganization(name = "Members Org", plan = "enterprise")).organization.id
        for (i in 0 until MEMBERS - 1) {
            clock.advanceSeconds(1)
            val u = db.createUser(NewUser(email = "member$i@example.com", name = "Member $i"))
            db.addMember(Actor.System, org, u.id, "member")
        }
        for (i in 0 until MCPS) {
            mcps.add(db.registerResource(Actor.System, org, ResourceKind.MCP, "MCP $i").id)
        }
        for (day in 1..30) {
            val at = Instant.parse("2026-01-%02dT09:00:00Z".format(day))
            db.recordUsageBatch(org, (0 until MCPS).map { i ->
                UsageEvent(count = (day + i).toULong(), resourceId = mcps[i], at = at)
            })
        }
        db.flush()
    }
}

/** Calls of `op` a second over `seconds` (the clock read every 16 calls). */
fun rate(seconds: Double, op: (Long) -> Unit): Double {
    val start = System.nanoTime()
    val until = start + (seconds * 1e9).toLong()
    var n = 0L
    while (true) {
        op(n)
        n++
        if (n % 16 == 0L && System.nanoTime() >= until) break
    }
    return n / ((System.nanoTime() - start) / 1e9)
}

fun main(args: Array<String>) {
    var rounds = 3
    var seconds = 1.0
    var only: Set<String> = emptySet()
    var i = 0
    while (i < args.size) {
        when (args[i]) {
            "--rounds" -> rounds = args[++i].toInt()
            "--seconds" -> seconds = args[++i].toDouble()
            "--workload" -> only = args[++i].split(",").toSet()
        }
        i++
    }
    val dir = createTempDirectory("orgdb-kotlin-bench")
    val fx = Fixture(dir.resolve("boundary.redb").toString())
    val db = fx.db
    val page = MemberQuery(perPage = 20u)
    val month = UsageQuery()
    val recorder = db.usageRecorder(fx.org)
    val batch: List<String?> = (0 until BATCH).map { fx.mcps[it % MCPS] }
    val onMcp = fx.mcps.map { recorder.forResource(it) }

    val all: List<Triple<String, Double, (Long) -> Unit>> = listOf(
        Triple("get_organization", 1.0) { _ -> db.getOrganization(fx.owner, fx.org) },
        Triple("get_organization_json", 1.0) { _ -> db.getOrganizationJson(fx.owner, fx.org) },
        Triple("list_members_page1", 1.0) { _ -> db.listMembers(fx.owner, fx.org, page) },
        Triple("list_members_page1_json", 1.0) { _ -> db.listMembersJson(fx.owner, fx.org, page) },
        Triple("usage_report", 1.0) { _ -> db.usageReport(fx.owner, fx.org, month) },
        Triple("usage_report_json", 1.0) { _ -> db.usageReportJson(fx.owner, fx.org, month) },
        Triple("recorder_record", 1.0) { n -> recorder.record(fx.mcps[(n % MCPS).toInt()], 1uL) },
        Triple("recorder_add", 1.0) { n -> onMcp[(n % MCPS).toInt()].add(1uL) },
        Triple("recorder_record_many", BATCH.toDouble()) { _ -> recorder.recordMany(batch) },
    )
    val workloads = all.filter { only.isEmpty() || it.first in only }
    for ((_, _, op) in workloads) rate(minOf(seconds, 1.0), op) // warm-up
    repeat(rounds) {
        for ((name, perCall, op) in workloads) {
            println("RATE $name ${"%.0f".format(rate(seconds, op) * perCall)}")
        }
    }
    recorder.close()
    db.close()
    fx.clock.close()
    dir.toFile().deleteRecursively()
}
