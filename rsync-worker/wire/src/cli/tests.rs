use clap::{CommandFactory, Parser};

use super::*;

fn parse(args: &[String]) -> WorkerArgs {
    WorkerArgs::try_parse_from(
        std::iter::once("dr-syncer-rsync-worker".to_owned()).chain(args.iter().cloned()),
    )
    .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn everything_pull() -> WorkerArgs {
    WorkerArgs {
        streams: 8,
        exclude: vec!["tmp/".into(), "-leading-dash".into()],
        bwlimit: Some(524_288),
        compress: true,
        checksum: true,
        verify_sample: Some(30),
        dry_run: true,
        no_delete: true,
        allow_mass_deletion: true,
        rsync_option: vec!["--delete".into(), "--exclude=*.bak".into()],
        timeout: Some(5400),
        termination_log: Some("/dev/termination-log".into()),
        retries: 0,
        user: "someone".into(),
        ..WorkerArgs::pull(
            "127.0.10.1:2222",
            "/etc/dr-syncer/ssh/known_host",
            "/etc/dr-syncer/ssh/id_ed25519",
            "app/data",
            "/data",
        )
    }
}

#[test]
fn the_command_is_well_formed() {
    WorkerArgs::command().debug_assert();
}

#[test]
fn pull_round_trips() {
    let minimal = WorkerArgs::pull("a:1", "/k/host", "/k/key", "ns/pvc", "/data");
    assert_eq!(parse(&minimal.to_args()), minimal);
    let full = everything_pull();
    assert_eq!(parse(&full.to_args()), full);
}

#[test]
fn check_round_trips() {
    let one = WorkerArgs::check(vec!["10.0.0.1:2222".into()], "/k/host", "/k/key");
    assert_eq!(parse(&one.to_args()), one);
    let many = WorkerArgs {
        timeout: Some(30),
        termination_log: Some("/dev/termination-log".into()),
        ..WorkerArgs::check(
            vec!["10.0.0.1:2222".into(), "10.0.0.2:2222".into()],
            "/k/host",
            "/k/key",
        )
    };
    assert_eq!(parse(&many.to_args()), many);
}

#[test]
fn constructors_match_the_parsed_defaults() {
    let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        parse(&args(
            "--agent a:1 --host-key-file h --key-file k --volume v --dest d"
        )),
        WorkerArgs::pull("a:1", "h", "k", "v", "d")
    );
    assert_eq!(
        parse(&args(
            "--check --agent a:1 --agent b:2 --host-key-file h --key-file k"
        )),
        WorkerArgs::check(vec!["a:1".into(), "b:2".into()], "h", "k")
    );
}

#[test]
fn rendered_flags_are_pinned() {
    // The exact argv the controller puts in a worker pod: a rename shows up here.
    assert_eq!(
        everything_pull().to_args().join(" "),
        "--agent 127.0.10.1:2222 --host-key-file /etc/dr-syncer/ssh/known_host \
         --key-file /etc/dr-syncer/ssh/id_ed25519 --volume app/data --dest /data \
         --termination-log /dev/termination-log --timeout 5400 --retries 0 --streams 8 \
         --user someone --exclude=tmp/ --exclude=-leading-dash --bwlimit=524288 \
         --rsync-option=--delete --rsync-option=--exclude=*.bak --compress --checksum \
         --verify-sample=30 --dry-run --no-delete --allow-mass-deletion"
    );
    let check = WorkerArgs {
        timeout: Some(30),
        termination_log: Some("/dev/termination-log".into()),
        ..WorkerArgs::check(vec!["a:1".into(), "b:2".into()], "/h", "/k")
    };
    assert_eq!(
        check.to_args().join(" "),
        "--check --agent a:1 --agent b:2 --host-key-file /h --key-file /k \
         --termination-log /dev/termination-log --timeout 30"
    );
}

#[test]
fn a_pull_without_volume_or_dest_is_refused() {
    let argv = [
        "w",
        "--agent",
        "a:1",
        "--host-key-file",
        "h",
        "--key-file",
        "k",
    ];
    assert!(WorkerArgs::try_parse_from(argv).is_err());
    // The same flags are a complete connectivity check.
    assert!(WorkerArgs::try_parse_from(argv.iter().chain(&["--check"])).is_ok());
}
