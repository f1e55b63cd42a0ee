//! What live tracing costs: the same load (alice sends bob N messages)
//! with no trace, with a trace on an idle unrelated JID, and with a trace
//! on bob (a busy session; limit high enough to keep recording). Medians of
//! 3 runs in one process.
//!
//! Run: `cargo bench -p osprey-gateway --bench live_cost` (N: OSPREY_BENCH_N).

mod common;

use std::time::Duration;

use common::median;
use osprey::live::Filter;
use osprey_instrument::live::Options;

fn main() {
    let n: usize = std::env::var("OSPREY_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("{n} messages alice → bob per run, median of 3 runs (server and clients in one process)");
        println!("{:<32} {:>10} {:>12} {:>12} {:>9}", "mode", "msgs/s", "wall µs/msg", "CPU µs/msg", "records");
        let mut base = None;
        for mode in ["no trace", "trace on idle carol", "trace on busy bob", "no trace (again)"] {
            let mut walls = Vec::new();
            let mut cpus = Vec::new();
            let mut records = 0;
            for _ in 0..3 {
                let b = common::server().await;
                let jid = match mode {
                    "trace on idle carol" => Some("carol@localhost"),
                    "trace on busy bob" => Some("bob@localhost"),
                    _ => None,
                };
                let trace = jid.map(|j| {
                    let f = Filter { jid: Some(j.into()), session: None, task: None, event: None };
                    let o = Options { limit: 1_000_000, duration: Duration::from_secs(600), ..Default::default() };
                    b.running.ctx.live.start(&f, o).unwrap()
                });
                let (w, c) = common::load(&b, n).await;
                walls.push(w);
                cpus.push(c);
                records = trace.map(|t| t.len()).unwrap_or(0);
                b.running.shutdown().await;
            }
            let (w, c) = (median(walls), median(cpus));
            let base_c = *base.get_or_insert(c);
            println!("{mode:<32} {:>10.0} {w:>12.2} {c:>12.2} {records:>9}   CPU ×{:.2}", 1e6 / w, c / base_c);
        }
    });
}
