//! Named locks: who gets them, who keeps them, and when a dead holder's lock is taken over.

use std::sync::Arc;
use std::time::Duration;

use cairn_state::{LockHolder, LockInfo, RunRecord, RunStatus, Store, current_host, now};
use chrono::TimeDelta;

use super::{create, dead_pid, run};

const HOUR: Duration = Duration::from_secs(3600);

async fn take(
    store: &Arc<dyn Store>,
    name: &str,
    r: &RunRecord,
    lease: Duration,
) -> Result<(), LockInfo> {
    let holder = LockHolder {
        run_id: r.id.clone(),
        host: r.host.clone(),
        pid: r.pid,
    };
    store
        .try_lock(name, &holder, lease)
        .await
        .expect("try_lock")
}

async fn held_by(store: &Arc<dyn Store>, name: &str) -> Option<String> {
    let locks = store.locks().await.expect("locks");
    locks.into_iter().find(|l| l.name == name).map(|l| l.run_id)
}

pub async fn locks_acquire_refuse_release(store: Arc<dyn Store>) {
    let a = run("a", TimeDelta::zero());
    let b = run("b", TimeDelta::zero());
    create(&store, &a).await;
    create(&store, &b).await;

    let before = now();
    assert_eq!(take(&store, "db:prod", &a, HOUR).await, Ok(()));
    // Taking it again (a resumed run, a second step of the same run) succeeds.
    assert_eq!(take(&store, "db:prod", &a, HOUR).await, Ok(()));

    let info = take(&store, "db:prod", &b, HOUR)
        .await
        .expect_err("b must be refused");
    assert_eq!(
        (info.name.as_str(), info.run_id.as_str()),
        ("db:prod", a.id.as_str())
    );
    assert_eq!(
        (info.host.as_str(), info.pid),
        (current_host().as_str(), std::process::id())
    );
    assert!(
        info.since >= before && info.lease_until > now() + TimeDelta::minutes(59),
        "{info:?}"
    );
    let line = info.to_string();
    assert!(
        line.starts_with(&format!("lock `db:prod` is held by run {} on host ", a.id)),
        "{line}"
    );

    // Another name is independent.
    assert_eq!(take(&store, "chroma", &b, HOUR).await, Ok(()));

    // release_lock only releases the holder's own lock.
    store
        .release_lock("db:prod", &b.claim())
        .await
        .expect("release_lock");
    assert_eq!(held_by(&store, "db:prod").await, Some(a.id.clone()));
    store
        .release_lock("db:prod", &a.claim())
        .await
        .expect("release_lock");
    assert_eq!(take(&store, "db:prod", &b, HOUR).await, Ok(()));

    store
        .release_locks(&b.claim())
        .await
        .expect("release_locks");
    assert_eq!(store.locks().await.expect("locks"), []);
    assert_eq!(take(&store, "db:prod", &a, HOUR).await, Ok(()));
    assert_eq!(take(&store, "chroma", &a, HOUR).await, Ok(()));

    // A heartbeat renews every lease of the run with the lease it was taken with.
    let short = Duration::from_secs(60);
    assert_eq!(take(&store, "short", &a, short).await, Ok(()));
    let lease_of = |locks: &[LockInfo]| {
        locks
            .iter()
            .find(|l| l.name == "short")
            .map(|l| l.lease_until)
    };
    let first = lease_of(&store.locks().await.expect("locks"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.heartbeat(&a.claim()).await.expect("heartbeat");
    let renewed = lease_of(&store.locks().await.expect("locks"));
    assert!(
        renewed > first && renewed < Some(now() + TimeDelta::seconds(61)),
        "{first:?} -> {renewed:?}"
    );
}

pub async fn locks_finished_and_paused(store: Arc<dyn Store>) {
    let mut holder = run("holder", TimeDelta::zero());
    let waiter = run("waiter", TimeDelta::zero());
    create(&store, &holder).await;
    create(&store, &waiter).await;
    assert_eq!(take(&store, "db:prod", &holder, HOUR).await, Ok(()));

    // Paused, with its process gone and its lease long expired: it keeps the lock.
    holder.status = RunStatus::Paused;
    holder.pid = dead_pid();
    store.update_run(&holder).await.expect("update_run");
    let expired = Duration::ZERO;
    assert_eq!(take(&store, "gate", &holder, expired).await, Ok(()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(take(&store, "db:prod", &waiter, HOUR).await.is_err());
    assert!(take(&store, "gate", &waiter, HOUR).await.is_err());

    // Finished: the lock is free, whatever the lease says.
    for status in [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Interrupted,
    ] {
        holder.status = status;
        holder.pid = std::process::id();
        store.update_run(&holder).await.expect("update_run");
        assert_eq!(
            take(&store, "db:prod", &waiter, HOUR).await,
            Ok(()),
            "holder {status}"
        );
        store
            .release_locks(&waiter.claim())
            .await
            .expect("release_locks");
        holder.status = RunStatus::Running;
        store.update_run(&holder).await.expect("update_run");
        assert_eq!(take(&store, "db:prod", &holder, HOUR).await, Ok(()));
    }
}

pub async fn locks_dead_holders(store: Arc<dyn Store>) {
    let waiter = run("waiter", TimeDelta::zero());
    create(&store, &waiter).await;

    // On this host, a dead pid frees the lock even with a long lease left.
    let mut dead = run("dead", TimeDelta::zero());
    dead.pid = dead_pid();
    create(&store, &dead).await;
    assert_eq!(take(&store, "here", &dead, HOUR).await, Ok(()));
    assert_eq!(take(&store, "here", &waiter, HOUR).await, Ok(()));
    assert_eq!(held_by(&store, "here").await, Some(waiter.id.clone()));

    // On another host the pid means nothing: alive while the lease runs...
    let mut remote = run("remote", TimeDelta::zero());
    remote.host = "elsewhere.example".into();
    remote.pid = dead_pid();
    create(&store, &remote).await;
    assert_eq!(take(&store, "there", &remote, HOUR).await, Ok(()));
    let info = take(&store, "there", &waiter, HOUR)
        .await
        .expect_err("remote holder is alive");
    assert_eq!(info.host, "elsewhere.example");
    // ...and its lease is measured by its heartbeat counter as this host sees it, never by
    // comparing clocks: a lease of 1 ms does not free it while the counter moves...
    assert_eq!(
        take(&store, "there", &remote, Duration::from_millis(1)).await,
        Ok(())
    );
    store.heartbeat(&remote.claim()).await.expect("heartbeat");
    tokio::time::sleep(Duration::from_millis(20)).await;
    take(&store, "there", &waiter, HOUR)
        .await
        .expect_err("its counter moved since the last look: alive");
    // ...and frees it once the counter has stood still for longer than the lease.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(take(&store, "there", &waiter, HOUR).await, Ok(()));

    // A remote holder whose heartbeat looks minutes old (the hosts' clocks disagree) keeps its
    // lock: a first look at its counter cannot judge it, whatever the lease.
    let mut silent = run("silent", TimeDelta::minutes(10));
    silent.host = "elsewhere.example".into();
    silent.heartbeat_at = now() - TimeDelta::minutes(3);
    create(&store, &silent).await;
    assert_eq!(
        take(&store, "silent", &silent, Duration::from_millis(1)).await,
        Ok(())
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    take(&store, "silent", &waiter, HOUR)
        .await
        .expect_err("first sight of its counter");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(take(&store, "silent", &waiter, HOUR).await, Ok(()));

    // A holder that is not a run in this store: only its pid and lease count.
    let mut stranger = run("stranger", TimeDelta::zero());
    stranger.id = "NOT-A-RUN".into();
    assert_eq!(take(&store, "x", &stranger, HOUR).await, Ok(()));
    assert!(take(&store, "x", &waiter, HOUR).await.is_err());
    stranger.pid = dead_pid();
    store
        .release_locks(&stranger.claim())
        .await
        .expect("release_locks");
    assert_eq!(take(&store, "x", &stranger, HOUR).await, Ok(()));
    assert_eq!(take(&store, "x", &waiter, HOUR).await, Ok(()));
}
