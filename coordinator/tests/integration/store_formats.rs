//! Records an older Ferry left in etcd: a job of store format 2 (its record
//! at `jobs/<job>`, each chunk's whole record at `jobs/<job>/chunks/<n>`) is
//! read and continued where it is by this version, which writes format 3
//! elsewhere (`v3/…`), so that an older leader never sees a format-3 job;
//! a new leader refuses a job of format 1 (SQL text) with a message.

use crate::synthetic;

use std::sync::Arc;

use etcd_client::{Client, GetOptions};
use ferry_common::plan::STORE_FORMAT;
use ferry_common::proto::{
    ChunkBounds, ChunkRecord, ChunkState, JobRecord, JobState, KeyTuple, KeyValue,
};
use ferry_coordinator::election::campaign;
use ferry_coordinator::leader::connect_etcd;
use ferry_coordinator::planner::Plan;
use ferry_coordinator::scheduler::Scheduler;
use ferry_coordinator::store::{EtcdStore, StateStore};
use ferry_tests::etcd::EtcdCluster;
use prost::Message;
use tokio_util::sync::CancellationToken;

const PREFIX: &str = "/formats";

fn bounds(n: u32) -> Option<ChunkBounds> {
    let v = |x: u32| Some(KeyTuple::of(vec![KeyValue::from_int(i64::from(x))]));
    Some(ChunkBounds::range(v(n), v(n + 1)))
}

/// A running job of store format `format` with `chunks` chunks, written
/// the way that format's Ferry wrote it (`jobs/…`).
async fn write_old_job(client: &Client, id: &str, format: u32, chunks: u32) {
    let mut c = client.clone();
    let job = JobRecord {
        job_id: id.into(),
        spec: Some(synthetic::spec()),
        state: JobState::Running as i32,
        chunks_total: chunks,
        format,
        started_at_ms: 1,
        ..Default::default()
    };
    c.put(format!("{PREFIX}/jobs/{id}"), job.encode_to_vec(), None)
        .await
        .expect("put the old job");
    for n in 1..=chunks {
        let rec = ChunkRecord {
            job_id: id.into(),
            chunk_no: n,
            range: format!("chunk {n}"),
            bounds: bounds(n),
            state: ChunkState::Pending as i32,
            ..Default::default()
        };
        c.put(
            format!("{PREFIX}/jobs/{id}/chunks/{n:010}"),
            rec.encode_to_vec(),
            None,
        )
        .await
        .expect("put an old chunk");
    }
}

async fn keys_under(client: &Client, prefix: &str) -> Vec<String> {
    client
        .clone()
        .get(
            format!("{PREFIX}/{prefix}"),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .expect("list")
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

async fn leader(client: &Client) -> Arc<Scheduler> {
    let stop = CancellationToken::new();
    let lead = campaign(client, PREFIX, "test", &stop, |_| {})
        .await
        .expect("campaign")
        .expect("won");
    let store = EtcdStore::new(client.clone(), PREFIX, Some(lead.fence.clone()));
    let snapshot = store.load().await.expect("load");
    let s = Scheduler::new(Arc::new(store), synthetic::config());
    s.recover(snapshot).await;
    // the election key stays renewed in the background (its stop token is never cancelled)
    drop(lead);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_2_job_is_continued_where_it_is() {
    let etcd = EtcdCluster::start(1);
    let client = connect_etcd(&etcd.endpoints()).await.expect("connect etcd");
    write_old_job(&client, "jold", 2, 3).await;
    write_old_job(&client, "jsql", 1, 2).await;
    let s = leader(&client).await;

    // the format-1 job is refused with a message naming what to do
    let sql = s.get_job("jsql").await.expect("format-1 job listed");
    assert_eq!(sql.state, JobState::Failed as i32);
    assert!(
        sql.error.contains("older Ferry") && sql.error.contains("submit it again"),
        "{}",
        sql.error
    );

    // the format-2 job runs to its end, its chunks written where they were
    let w = synthetic::register(&s, "", 1).await;
    let old = s.get_job("jold").await.expect("format-2 job");
    assert_eq!(old.chunks[0].range, "chunk 1", "the stored range is shown");
    for _ in 0..3 {
        let a = s.acquire(&w, 1).await.expect("acquire");
        let a = a.into_iter().next().expect("a chunk of the old job");
        let r = a.chunk.expect("chunk ref");
        assert_eq!(a.bounds, bounds(r.chunk_no), "bounds of the old record");
        s.complete(&w, r, 7, 0, false, 0).await.expect("complete");
    }
    let old = s.get_job("jold").await.expect("format-2 job");
    assert_eq!(old.state, JobState::Succeeded as i32);
    assert_eq!(old.rows_written, 21);
    let mut raw = client.clone();
    let chunk = raw
        .get(format!("{PREFIX}/jobs/jold/chunks/0000000002"), None)
        .await
        .expect("get");
    let rec = ChunkRecord::decode(chunk.kvs()[0].value()).expect("decodes");
    assert_eq!(rec.state, ChunkState::Succeeded as i32);
    assert_eq!(
        rec.bounds,
        bounds(2),
        "the whole record stays for older leaders"
    );
    assert!(
        keys_under(&client, "v3/").await.is_empty(),
        "nothing of the old job is written under v3/"
    );

    // a new job goes to v3/, out of an older leader's sight
    let id = s
        .submit_planned(String::new(), synthetic::spec(), Plan::synthetic(4))
        .await
        .expect("submit");
    let v3 = keys_under(&client, "v3/").await;
    assert!(v3.contains(&format!("{PREFIX}/v3/jobs/{id}")), "{v3:?}");
    assert!(
        !keys_under(&client, "jobs/")
            .await
            .iter()
            .any(|k| k.contains(&id)),
        "the new job is not under jobs/"
    );
    let new = s.get_job(&id).await.expect("new job");
    assert_eq!(new.chunks.len(), 4);

    // a new leader reads both formats back
    let store = EtcdStore::new(client.clone(), PREFIX, None);
    let snap = store.load().await.expect("load");
    let formats: Vec<(String, u32, usize)> = snap
        .jobs
        .iter()
        .map(|(j, c)| (j.job_id.clone(), j.format, c.len()))
        .collect();
    assert!(formats.contains(&("jold".into(), 2, 3)), "{formats:?}");
    assert!(
        formats.contains(&(id.clone(), STORE_FORMAT, 4)),
        "{formats:?}"
    );

    // and deleting the old job removes its keys where they are
    let (old_record, _) = snap
        .jobs
        .iter()
        .find(|(j, _)| j.job_id == "jold")
        .expect("old job");
    store.delete_job(old_record).await.expect("delete");
    assert!(
        !keys_under(&client, "jobs/")
            .await
            .iter()
            .any(|k| k.contains("jold")),
        "the old job's keys are gone"
    );
}
