//! The shared paged listing against a real etcd: many keys, large values, one revision.

use etcd_client::{Client, GetOptions, Txn, TxnOp};
use ferrolb_etcd::listing::{Paging, list_prefix_paged};
use ferrolb_etcd::{list_prefix, watch_changes, watch_prefix};
use ferrolb_testkit::Etcd;

/// etcd's default `--max-txn-ops`.
const TXN_OPS: usize = 128;

async fn client(etcd: &Etcd) -> Client {
    Client::connect([etcd.endpoints()], None)
        .await
        .expect("connect")
}

/// Writes `n` announcements of a realistic size (an address eligible on six nodes, some 250
/// bytes: 20,000 of them pass gRPC's 4 MiB receive limit) under `/ferrolb/announcements/` in a few
/// big transactions.
async fn fill(c: &mut Client, n: u32) {
    let keys: Vec<u32> = (0..n).collect();
    for chunk in keys.chunks(TXN_OPS) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|i| {
                let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
                TxnOp::put(
                    format!("/ferrolb/announcements/{ip}"),
                    format!(
                        concat!(
                            r#"{{"ip":"{ip}","services":["production/frontend-{i}"],"#,
                            r#""nodes":["worker-a-01","worker-a-02","worker-a-03","#,
                            r#""worker-b-01","worker-b-02","worker-b-03"],"#,
                            r#""interfaces":["eth0","bond0.100"]}}"#
                        ),
                        ip = ip,
                        i = i
                    ),
                    None,
                )
            })
            .collect();
        c.txn(Txn::new().and_then(ops)).await.expect("txn");
    }
}

#[tokio::test]
async fn a_listing_of_twenty_thousand_announcements_reads_every_one() {
    let etcd = Etcd::start().expect("etcd");
    let mut c = client(&etcd).await;
    fill(&mut c, 20_000).await;
    c.put("/ferrolb0", "just past the prefix", None)
        .await
        .expect("put");
    let newest = c
        .get("/", Some(GetOptions::new().with_count_only()))
        .await
        .expect("get")
        .header()
        .expect("header")
        .revision();

    let (kvs, revision) = list_prefix(&mut c, "/ferrolb/").await.expect("list");

    assert_eq!(kvs.len(), 20_000);
    assert_eq!(revision, newest);
    assert!(
        kvs.windows(2).all(|w| w[0].key < w[1].key),
        "sorted, no repeats"
    );
    assert!(kvs.iter().all(|k| k.key.starts_with(b"/ferrolb/")));

    // Some 5 MB in all: over gRPC's default 4 MiB receive limit, which pages stay under.
    let grpc_default = Paging {
        max_message: 4 << 20,
        ..Paging::default()
    };
    let (again, _) = list_prefix_paged(&c, "/ferrolb/", grpc_default)
        .await
        .expect("list");
    assert_eq!(again, kvs);
}

#[tokio::test]
async fn every_page_is_read_at_the_first_pages_revision() {
    let etcd = Etcd::start().expect("etcd");
    let mut c = client(&etcd).await;
    fill(&mut c, 2_000).await;
    // Keys written while the listing runs sort after every existing one, so a page read at a
    // newer revision would include them.
    let mut writer = c.clone();
    let writes = tokio::spawn(async move {
        for i in 0..200 {
            writer
                .put(format!("/ferrolb/zz/{i:04}"), "late", None)
                .await
                .expect("put");
        }
    });
    let paging = Paging {
        keys: 10,
        ..Paging::default()
    };
    let (kvs, revision) = list_prefix_paged(&c, "/ferrolb/", paging)
        .await
        .expect("list");
    writes.await.expect("writer");

    let at_revision = c
        .get(
            "/ferrolb/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_count_only()
                    .with_revision(revision),
            ),
        )
        .await
        .expect("count")
        .count();
    assert_eq!(i64::try_from(kvs.len()).expect("len"), at_revision);
    assert!(kvs.iter().all(|k| k.revision <= revision));
    let late = kvs
        .iter()
        .filter(|k| k.key.starts_with(b"/ferrolb/zz/"))
        .count();
    assert!(
        late < 200,
        "the listing ran {late} writes late: it was not concurrent"
    );

    // Watching from the next revision sees every later write exactly once.
    let mut watch = watch_prefix(&mut c, "/ferrolb/zz/", revision + 1)
        .await
        .expect("watch");
    let mut seen = late;
    while seen < 200 {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), watch.message())
            .await
            .expect("watch answers");
        seen += watch_changes(msg).expect("changes").len();
    }
    assert_eq!(seen, 200);
}

#[tokio::test]
async fn four_values_over_a_megabyte_are_listed_in_pages_under_the_receive_limit() {
    let etcd = Etcd::start().expect("etcd");
    let mut c = client(&etcd).await;
    let big = vec![b'x'; 1_100_000];
    for i in 0..4 {
        c.put(format!("/ferrolb/big/{i}"), big.clone(), None)
            .await
            .expect("put 1.1 MB (under etcd's 1.5 MiB request limit)");
    }
    fill(&mut c, 10).await;

    // The default limits, and gRPC's own 4 MiB receive limit, which 4.4 MB in one answer passes.
    for max_message in [ferrolb_etcd::listing::MAX_MESSAGE, 4 << 20] {
        let paging = Paging {
            max_message,
            ..Paging::default()
        };
        let (kvs, _) = list_prefix_paged(&c, "/ferrolb/", paging)
            .await
            .expect("list");
        assert_eq!(kvs.len(), 14, "max_message {max_message}");
        let big_ones = kvs
            .iter()
            .filter(|k| k.value.as_ref().is_some_and(|(v, _)| *v == big))
            .count();
        assert_eq!(big_ones, 4, "max_message {max_message}");
    }
}
