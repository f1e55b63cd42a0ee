//! MAM page queries at a million archived rows, on PostgreSQL: a benchmark
//! program (it prints figures; it asserts nothing).
//!
//!     cargo run --release -p osprey-gateway --example mam_page -- \
//!         [postgres://postgres@127.0.0.1:5432] [ROWS] [QUERIES]
//!
//! It makes a fresh database `osprey_mam_bench`, lets Osprey's migrations
//! build the schema, fills `mam_messages` with ROWS rows (default 1M):
//! `alice` holds a fifth of them, 800 other accounts share the rest, each
//! archive with 20 peers. Then, for each kind of page a client asks
//! (first page, a page after an id in the middle, the last page, a `with`
//! filter, a `start`/`end` window), it prints the plan PostgreSQL chose
//! (`EXPLAIN (ANALYZE, BUFFERS)` of the exact SQL `Storage::mam_page`
//! runs) and the latency of QUERIES (default 500) page queries through
//! `Storage::mam_page`: median, 99th percentile, max.

use std::time::{Duration, Instant};

use osprey::storage::{page_sql, ArchiveQuery, PageBind, Storage, StorageOptions};
use sqlx::{Connection, Executor, Row};

const DB: &str = "osprey_mam_bench";
/// 2023-11-14T22:13:20Z in microseconds: the first message's time.
const T0_US: i64 = 1_700_000_000_000_000;
const PAGE: u32 = 50;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".into());
    let rows: i64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let queries: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);

    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {DB}").as_str())
        .await?;
    admin
        .execute(format!("CREATE DATABASE {DB}").as_str())
        .await?;
    let url = format!("{server}/{DB}");
    let storage = Storage::connect(
        &url,
        &StorageOptions {
            max_connections: 4,
            migration_locking: true,
        },
    )
    .await?;
    let mut pg = sqlx::PgConnection::connect(&url).await?;

    let started = Instant::now();
    let alice = rows / 5;
    let others = rows - alice;
    // One message per microsecond apart; ids as the module makes them.
    let fill = "INSERT INTO mam_messages (host, username, id, peer_bare, peer_resource, outgoing, xml) \
         SELECT 'localhost', $1 || CASE WHEN $2 THEN (g % 800)::text ELSE '' END, \
                ($3 + g) * 256, 'peer' || (g % 20) || '@localhost', 'phone', (g % 2)::smallint, \
                '<message from=''peer' || (g % 20) || '@localhost/phone'' to=''someone@localhost'' type=''chat'' id=''' || g || '''><body>message number ' || g || ' of the benchmark archive</body></message>' \
         FROM generate_series(1, $4) AS g";
    sqlx::query(fill)
        .bind("user")
        .bind(true)
        .bind(T0_US)
        .bind(others)
        .execute(&mut pg)
        .await?;
    sqlx::query(fill)
        .bind("alice")
        .bind(false)
        .bind(T0_US + others)
        .bind(alice)
        .execute(&mut pg)
        .await?;
    pg.execute("VACUUM ANALYZE mam_messages").await?;
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM mam_messages")
        .fetch_one(&mut pg)
        .await?
        .try_get("n")?;
    println!(
        "filled {total} rows ({alice} in alice's archive) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let id_of = |g: i64| (T0_US + others + g) * 256;
    let base = ArchiveQuery {
        host: "localhost".into(),
        user: "alice".into(),
        limit: PAGE + 1,
        ..ArchiveQuery::default()
    };
    let cases = [
        ("first page", base.clone()),
        (
            "page after an id in the middle",
            ArchiveQuery {
                after: Some(id_of(alice / 2)),
                ..base.clone()
            },
        ),
        (
            "last page (RSM <before/>)",
            ArchiveQuery {
                reverse: true,
                ..base.clone()
            },
        ),
        (
            "with=peer7, after the middle",
            ArchiveQuery {
                with_bare: Some("peer7@localhost".into()),
                after: Some(id_of(alice / 2)),
                ..base.clone()
            },
        ),
        (
            "start/end window in the middle",
            ArchiveQuery {
                after: Some(id_of(alice / 2) - 1),
                before: Some(id_of(alice / 2 + 10_000)),
                ..base.clone()
            },
        ),
    ];
    for (name, q) in &cases {
        let (sql, binds) = page_sql(q);
        let explain_sql = format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}");
        let mut explain = sqlx::query(&explain_sql).bind(&q.host).bind(&q.user);
        for b in &binds {
            explain = match b {
                PageBind::Text(s) => explain.bind(s.as_str()),
                PageBind::Int(i) => explain.bind(*i),
            };
        }
        println!("\n== {name}\n{sql}");
        for r in explain.fetch_all(&mut pg).await? {
            let line: String = r.try_get(0)?;
            println!("  {line}");
        }
        let mut times = Vec::with_capacity(queries);
        for _ in 0..queries {
            let t = Instant::now();
            let page = storage.mam_page(q).await?;
            times.push(t.elapsed());
            assert!(!page.is_empty(), "{name}: an empty page");
        }
        times.sort();
        let at = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {queries} queries through Storage::mam_page: median {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            ms(at(0.5)),
            ms(at(0.99)),
            ms(at(1.0))
        );
    }
    storage.close().await;
    drop(pg);
    admin
        .execute(format!("DROP DATABASE IF EXISTS {DB}").as_str())
        .await?;
    Ok(())
}
