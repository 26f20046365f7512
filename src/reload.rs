//! Policy reload, in one place: [`reload_policies`] swaps in a freshly loaded
//! policy set (or keeps the old one when a file is invalid), and is what
//! SIGHUP, `POST /v1/reload` and a change in the policy directory all call.
//!
//! The directory is watched with inotify (through `notify`), not polled: a change
//! takes effect [`DEBOUNCE`] after the last write of a burst, and an idle proxy
//! does no work. Once a second the directory itself is checked, so a directory
//! that is removed, replaced or created later is watched again once it is there
//! (a watch follows an inode, not a name).

use crate::policy::load_policy_dir;
use crate::proxy::state::ProxyState;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Quiet time after the last change before reloading: editors and `cp` write a
/// file in several steps, and one reload should see them all.
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// A burst of changes that never goes quiet still reloads this long after its
/// first change.
const MAX_DELAY: Duration = Duration::from_secs(2);
/// How often the directory itself is looked at (gone, replaced, back).
const DIR_CHECK: Duration = Duration::from_secs(1);

/// Reloads every policy file. On any invalid file the old set stays and the
/// errors are returned; otherwise the new set (and its rate limits) takes over for
/// new connections and requests. Returns the number of policies loaded.
pub fn reload_policies(state: &ProxyState) -> Result<usize, Vec<crate::yaml::FileError>> {
    let report = load_policy_dir(&state.policies_dir);
    if !report.errors.is_empty() {
        for error in &report.errors {
            tracing::error!("policy reload refused, the old set stays: {error}");
        }
        state.metrics.policy_reloaded(false);
        return Err(report.errors);
    }
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    let count = report.policies.iter().count();
    state
        .rate_limits
        .set(crate::ratelimit::RateLimits::from_policies(
            &report.policies,
        ));
    state.approvals.policies_reloaded(&report.policies);
    state.policies.set(report.policies);
    state.metrics.policy_reloaded(true);
    tracing::info!(policies = count, "policies reloaded");
    Ok(count)
}

/// Starts the two automatic reloads, on SIGHUP and on a change in the policy
/// directory; both end with shutdown.
pub fn spawn_reloaders(state: &Arc<ProxyState>) {
    tokio::spawn(reload_on_sighup(state.clone()));
    tokio::spawn(reload_on_change(state.clone()));
}

/// Reloads policies on SIGHUP until shutdown.
pub async fn reload_on_sighup(state: Arc<ProxyState>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP; reload with POST /v1/reload");
        return;
    };
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            got = hup.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!("SIGHUP: reloading policies");
                let _ = reload_policies(&state);
            }
        }
    }
}

/// What the watcher thread reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// A policy file changed (or events were lost): reload.
    Files,
    /// The watched directory itself was removed or moved: its watch is dead.
    Dir,
}

/// Identity of the directory a watch is on: a watch follows the inode, so a
/// directory replaced under the same name needs a new one.
type DirId = (u64, u64);

async fn dir_id(dir: &Path) -> Option<DirId> {
    let meta = tokio::fs::metadata(dir).await.ok()?;
    meta.is_dir().then(|| (meta.dev(), meta.ino()))
}

/// Watches `state.policies_dir` and reloads the policies after a change, until
/// shutdown. Never fails: without a watch, SIGHUP and the API still reload.
pub async fn reload_on_change(state: Arc<ProxyState>) {
    // notify reports paths under the absolute form of what it watches.
    let dir = std::path::absolute(&state.policies_dir).unwrap_or(state.policies_dir.clone());
    // Capacity 1: a signal already queued covers the ones that find it full.
    let (files_tx, mut files_rx) = mpsc::channel::<()>(1);
    let (dir_tx, mut dir_rx) = mpsc::channel::<()>(1);
    let root = dir.clone();
    let handler = move |event: notify::Result<Event>| match classify(&root, event) {
        Some(Signal::Files) => {
            let _ = files_tx.try_send(());
        }
        Some(Signal::Dir) => {
            let _ = dir_tx.try_send(());
        }
        None => {}
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch the policy directory; reload with SIGHUP or POST /v1/reload");
            return;
        }
    };
    // The directory as last seen, and whether the watch on it is live.
    let mut seen = dir_id(&dir).await;
    let mut armed = false;
    let mut warned = false;
    // (first change, last change) of the burst waiting to be reloaded.
    let mut pending: Option<(Instant, Instant)> = None;
    let mut tick = tokio::time::interval(DIR_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = pending.map(|(first, last)| (last + DEBOUNCE).min(first + MAX_DELAY));
        let changed = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            got = files_rx.recv() => match got {
                Some(()) => true,
                None => return,
            },
            got = dir_rx.recv() => {
                if got.is_none() {
                    return;
                }
                // Watched again by the next check, once the directory is there.
                if armed {
                    let _ = watcher.unwatch(&dir);
                    armed = false;
                }
                seen = None;
                true
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                pending = None;
                tracing::info!(dir = %dir.display(), "policy files changed: reloading");
                let state = state.clone();
                // Reading and validating the files is blocking work.
                let _ = tokio::task::spawn_blocking(move || reload_policies(&state)).await;
                false
            }
            _ = tick.tick() => {
                let now = dir_id(&dir).await;
                // Gone, back or replaced: what it holds may differ. (A missing
                // directory fails the reload, so the old set stays.)
                let changed = now != seen;
                if changed && armed {
                    let _ = watcher.unwatch(&dir);
                    armed = false;
                }
                seen = now;
                if !armed && seen.is_some() {
                    match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                        Ok(()) => (armed, warned) = (true, false),
                        Err(err) if !warned => {
                            warned = true;
                            tracing::warn!(dir = %dir.display(), error = %err, "cannot watch the policy directory; retrying (SIGHUP and POST /v1/reload still reload)");
                        }
                        Err(_) => {}
                    }
                }
                changed
            }
        };
        if changed {
            let now = Instant::now();
            pending = Some((pending.map_or(now, |(first, _)| first), now));
        }
    }
}

/// What an event from the watcher means for the policies in `dir`.
fn classify(dir: &Path, event: notify::Result<Event>) -> Option<Signal> {
    let event = match event {
        Ok(event) => event,
        // Whatever went wrong, a reload is the safe answer.
        Err(_) => return Some(Signal::Files),
    };
    if event.need_rescan() {
        return Some(Signal::Files);
    }
    match event.kind {
        // Opening and reading (the reload itself among them) change nothing.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return None,
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
            if event.paths.iter().any(|p| p == dir) =>
        {
            return Some(Signal::Dir)
        }
        _ => {}
    }
    event
        .paths
        .iter()
        .any(|p| is_policy_file(p))
        .then_some(Signal::Files)
}

/// Whether `path` may hold a policy (`*.yaml`, `*.yml`), or is the `..data`
/// link (and its targets) that Kubernetes swaps to update a mounted ConfigMap
/// whose files are links through it.
fn is_policy_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.starts_with("..")
        || path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};
    use std::path::PathBuf;

    fn event(kind: EventKind, paths: &[&str]) -> notify::Result<Event> {
        let mut event = Event::new(kind);
        for path in paths {
            event = event.add_path(PathBuf::from(path));
        }
        Ok(event)
    }

    #[test]
    fn only_policy_file_changes_reload() {
        let dir = Path::new("/etc/tg/policies");
        let modify = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        let cases = [
            (modify, "/etc/tg/policies/main.yaml", Some(Signal::Files)),
            (modify, "/etc/tg/policies/main.yml", Some(Signal::Files)),
            (modify, "/etc/tg/policies/.main.yaml.swp", None),
            (modify, "/etc/tg/policies/main.yaml~", None),
            (modify, "/etc/tg/policies/README", None),
            (
                EventKind::Create(CreateKind::File),
                "/etc/tg/policies/new.yaml",
                Some(Signal::Files),
            ),
            (
                EventKind::Remove(RemoveKind::File),
                "/etc/tg/policies/old.yml",
                Some(Signal::Files),
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                "/etc/tg/policies/..data",
                Some(Signal::Files),
            ),
            (
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                "/etc/tg/policies/main.yaml",
                None,
            ),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                "/etc/tg/policies/main.yaml",
                None,
            ),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                "/etc/tg/policies/main.yaml",
                Some(Signal::Files),
            ),
            (
                EventKind::Remove(RemoveKind::Folder),
                "/etc/tg/policies",
                Some(Signal::Dir),
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                "/etc/tg/policies",
                Some(Signal::Dir),
            ),
        ];
        for (kind, path, want) in cases {
            assert_eq!(classify(dir, event(kind, &[path])), want, "{kind:?} {path}");
        }
        // A rename from a temporary name onto a policy file.
        assert_eq!(
            classify(
                dir,
                event(
                    EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                    &["/etc/tg/policies/.tmp123", "/etc/tg/policies/main.yaml"]
                )
            ),
            Some(Signal::Files)
        );
        assert_eq!(
            classify(dir, Err(notify::Error::generic("queue overflow"))),
            Some(Signal::Files)
        );
    }
}
