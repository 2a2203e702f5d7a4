//! Who holds a lease, and whether that holder is provably dead, so a restarted mediator resumes
//! its predecessor's sagas at once instead of waiting for their leases to expire.
//!
//! A default lease owner names its process as the kernel knows it: `mediator-PID-RANDOM@BOOT:
//! PIDNS:PID:START` (boot id, pid namespace, pid, start time in clock ticks since boot). Another
//! process on the same machine boot and in the same pid namespace can prove it gone: no process
//! has that pid, or the one that has it started at another time (the pid was reused). Anything
//! else (another machine, another container, no `/proc`) proves nothing, and the lease runs out
//! as before. A holder that is alive is never preempted.
//!
//! A mediator given a stable node id ([`crate::MediatorBuilder::node_id`]) owns its leases as
//! `node:ID`; starting again with the same id means its predecessor is gone (node ids are unique
//! among live mediators: the deployment's promise, as with DBOS's executor id), so it takes
//! those leases back at once. That works across machines, for PostgreSQL.

use std::path::Path;
use std::sync::OnceLock;

/// The prefix of a lease owner given by a node id.
const NODE: &str = "node:";

/// The lease owner of a mediator with node id `id`.
pub(crate) fn node_owner(id: &str) -> String {
    format!("{NODE}{id}")
}

/// Whether `owner` names a node id (its leases are taken back by the next mediator with it).
pub(crate) fn is_node(owner: &str) -> bool {
    owner.starts_with(NODE)
}

/// This process as the kernel knows it: `BOOT:PIDNS:PID:START`, or `None` without `/proc`.
/// Read once per process.
pub(crate) fn this_process() -> Option<String> {
    static IDENTITY: OnceLock<Option<String>> = OnceLock::new();
    IDENTITY
        .get_or_init(|| {
            let pid = std::process::id();
            Some(format!("{}:{pid}:{}", machine()?, start_time(pid)?))
        })
        .clone()
}

/// The default lease owner: readable first, then this process's identity, if known.
pub(crate) fn default_owner(random: &str) -> String {
    let pid = std::process::id();
    match this_process() {
        Some(identity) => format!("mediator-{pid}-{random}@{identity}"),
        None => format!("mediator-{pid}-{random}"),
    }
}

/// Whether the process that `owner` names is provably gone: it ran on this machine boot, in
/// this pid namespace, and no process with its pid and start time exists now.
pub(crate) fn provably_dead(owner: &str) -> bool {
    let Some((_, identity)) = owner.rsplit_once('@') else {
        return false;
    };
    let mut parts = identity.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(machine)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    if self::machine() != Some(machine) || pid == std::process::id() {
        return false;
    }
    match start_time(pid) {
        // The pid is free, or taken by a process that started at another time.
        None => Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists(),
        Some(now) => now != start,
    }
}

/// `BOOT:PIDNS`: this machine boot and this pid namespace. Read once per process.
fn machine() -> Option<&'static str> {
    static MACHINE: OnceLock<Option<String>> = OnceLock::new();
    MACHINE
        .get_or_init(|| {
            let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
            let namespace = namespace.to_string_lossy();
            let namespace = namespace.trim_start_matches("pid:[").trim_end_matches(']');
            Some(format!("{}:{namespace}", boot.trim().replace('-', "")))
        })
        .as_deref()
}

/// When process `pid` started (clock ticks since boot, field 22 of `/proc/PID/stat`).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let (_, after) = stat.rsplit_once(')')?;
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_live_holder_is_never_proven_dead() {
        let me = default_owner("abc");
        assert!(!provably_dead(&me), "this process");
        if let Some(identity) = this_process() {
            // The parent (the test harness's shell or cargo) is alive too.
            let parent = std::os::unix::process::parent_id();
            let start = start_time(parent).unwrap();
            let (machine, _) = identity.rsplit_once(':').unwrap();
            let (machine, _) = machine.rsplit_once(':').unwrap();
            let owner = format!("mediator-{parent}-x@{machine}:{parent}:{start}");
            assert!(!provably_dead(&owner), "{owner}");
            // The same pid, started at another time: the pid was reused.
            let reused = format!("mediator-{parent}-x@{machine}:{parent}:{}", start + 1);
            assert!(provably_dead(&reused), "{reused}");
            // Another machine boot proves nothing.
            let elsewhere = format!("mediator-1-x@ffff:1:{parent}:{}", start + 1);
            assert!(!provably_dead(&elsewhere));
        }
        for opaque in ["worker-7", "node:a", "x@y", "x@a:b:c:d"] {
            assert!(!provably_dead(opaque), "{opaque}");
        }
        assert!(is_node(&node_owner("w1")));
    }
}
