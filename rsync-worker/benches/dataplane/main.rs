//! `make bench`: the data plane (`dr-syncer-agent` + `dr-syncer-rsync-worker`, release
//! builds) against `rsync -a --delete -e ssh` with a stock OpenSSH `sshd` on a loopback
//! port, both pulling, ed25519 keys for both.
//!
//! Cases: initial copy, re-run with nothing changed, re-run after 1% of the bytes changed
//! across 5% of the files (plus a few adds and deletes), and a 2 GiB file with 10 MiB of
//! scattered edits. For each case and tool: wall seconds, bytes on the wire (ours: the
//! worker's summary; rsync: `--stats` total bytes sent + received) and peak RSS of both
//! ends (`getrusage(RUSAGE_CHILDREN)` in a wrapper process, `VmHWM` for the agent).
//! Prints a table and writes `target/bench/dataplane.json`.
//!
//! Every case runs `--rounds` times (default 3); the tools take turns going first, the
//! page cache is flushed (`sync`) before each timed run and the tables report the median
//! wall time (peak RSS: the largest seen). One run on a shared VM varies by +-50%, so a
//! single sample decides nothing.
//!
//! Usage: `dataplane --bin-dir target/release --out target/bench [--streams N]
//! [--cases a,b] [--rounds N]`.
//! Internal: `dataplane --measure FILE -- CMD ARGS...` runs CMD and writes its peak RSS.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

mod dataset;

use dataset::{
    Rng, copy_file, copy_tree_linked, ensure_dataset, mutate_one_percent, regular_files,
    scatter_edit, set_aside,
};

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const SEED: u64 = 0xd5_5eed;
const MIB: u64 = 1 << 20;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--measure") {
        return measure_mode(&args[1..]);
    }
    let opts = Opts::parse(&args)?;
    run_bench(&opts)
}

// ---------------------------------------------------------------------------------------
// Options

struct Opts {
    bin_dir: PathBuf,
    out: PathBuf,
    streams: usize,
    cases: Vec<String>,
    rounds: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Opts {
            bin_dir: PathBuf::from("target/release"),
            out: PathBuf::from("target/bench"),
            streams: 2,
            rounds: 3,
            cases: ["initial", "nochange", "change1pct", "bigfile"]
                .map(String::from)
                .to_vec(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--bin-dir" => {
                    o.bin_dir = PathBuf::from(it.next().ok_or("--bin-dir needs a value")?)
                }
                "--out" => o.out = PathBuf::from(it.next().ok_or("--out needs a value")?),
                "--streams" => o.streams = it.next().ok_or("--streams needs a value")?.parse()?,
                "--rounds" => {
                    o.rounds = it
                        .next()
                        .ok_or("--rounds needs a value")?
                        .parse::<usize>()?
                        .max(1)
                }
                "--cases" => {
                    o.cases = it
                        .next()
                        .ok_or("--cases needs a value")?
                        .split(',')
                        .map(String::from)
                        .collect()
                }
                "--bench" => {} // appended by `cargo bench`
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        o.bin_dir = fs::canonicalize(&o.bin_dir)?;
        fs::create_dir_all(&o.out)?;
        o.out = fs::canonicalize(&o.out)?;
        Ok(o)
    }
}

// ---------------------------------------------------------------------------------------
// Peak RSS wrapper: runs one command, waits, reports the largest RSS among its descendants.

fn measure_mode(args: &[String]) -> Result<()> {
    let out = args.first().ok_or("--measure needs a file")?;
    let cmd = args
        .get(2..)
        .filter(|c| !c.is_empty() && args[1] == "--")
        .ok_or("--measure FILE -- CMD...")?;
    let status = Command::new(&cmd[0]).args(&cmd[1..]).status()?;
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    fs::write(out, usage.max_rss().to_string())?;
    std::process::exit(status.code().unwrap_or(1));
}

fn read_kib(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    let status = cmd.status()?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}").into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Keys, sshd, agent

struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn create(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)?;
        for name in ["client", "sshd_host", "agent_host"] {
            let path = dir.join(name);
            if !path.exists() {
                run_ok(
                    Command::new("ssh-keygen")
                        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                        .arg(&path),
                )?;
            }
        }
        fs::copy(dir.join("client.pub"), dir.join("authorized_keys"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(port: u16, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            return Err(format!("server exited early: {status}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("nothing listening on port {port}").into())
}

struct Sshd {
    child: Child,
    port: u16,
}

impl Sshd {
    fn start(keys: &Keys, dir: &Path) -> Result<Self> {
        fs::create_dir_all("/run/sshd")?;
        let port = free_port()?;
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nLogLevel ERROR\n",
                keys.path("sshd_host").display(),
                keys.path("authorized_keys").display(),
                dir.join("sshd.pid").display()
            ),
        )?;
        let mut child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .spawn()?;
        wait_listening(port, &mut child)?;
        Ok(Self { child, port })
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Agent {
    child: Child,
    port: u16,
}

impl Agent {
    fn start(opts: &Opts, keys: &Keys, volumes: &[(&str, &Path)]) -> Result<Self> {
        let port = free_port()?;
        let mut cmd = Command::new(opts.bin_dir.join("dr-syncer-agent"));
        cmd.arg("--listen").arg(format!("127.0.0.1:{port}"));
        cmd.arg("--host-key-file").arg(keys.path("agent_host"));
        cmd.arg("--authorized-keys-file")
            .arg(keys.path("authorized_keys"));
        for (name, dir) in volumes {
            cmd.arg("--volume").arg(format!("{name}={}", dir.display()));
        }
        cmd.env("RUST_LOG", "warn");
        let mut child = cmd.spawn()?;
        wait_listening(port, &mut child)?;
        Ok(Self { child, port })
    }

    /// Peak RSS so far, then SIGTERM and wait.
    fn stop(mut self) -> u64 {
        let hwm = vm_hwm_kib(self.child.id());
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::SIGTERM,
        );
        let _ = self.child.wait();
        hwm
    }
}

// ---------------------------------------------------------------------------------------
// Runs

#[derive(Debug, Default, Clone)]
struct Measure {
    wall: f64,
    wire: u64,
    client_rss_kib: u64,
    server_rss_kib: u64,
    summary: Value,
}

fn timed(cmd: &mut Command) -> Result<(f64, ExitStatus, Vec<u8>)> {
    let started = Instant::now();
    let out = cmd.stderr(Stdio::inherit()).output()?;
    Ok((started.elapsed().as_secs_f64(), out.status, out.stdout))
}

fn run_ours(
    opts: &Opts,
    keys: &Keys,
    volumes: &[(&str, &Path)],
    volume: &str,
    dest: &Path,
    tmp: &Path,
) -> Result<Measure> {
    let agent = Agent::start(opts, keys, volumes)?;
    let rss_file = tmp.join("worker.rss");
    let self_exe = std::env::current_exe()?;
    let mut cmd = Command::new(self_exe);
    cmd.arg("--measure")
        .arg(&rss_file)
        .arg("--")
        .arg(opts.bin_dir.join("dr-syncer-rsync-worker"));
    cmd.arg("--agent").arg(format!("127.0.0.1:{}", agent.port));
    cmd.arg("--host-key-file").arg(keys.path("agent_host.pub"));
    cmd.arg("--key-file").arg(keys.path("client"));
    cmd.args([
        "--volume",
        volume,
        "--streams",
        &opts.streams.to_string(),
        "--retries",
        "0",
    ]);
    cmd.arg("--dest").arg(dest);
    cmd.env("RUST_LOG", "warn");
    let (wall, status, stdout) = timed(&mut cmd)?;
    let agent_rss = agent.stop();
    if !status.success() {
        return Err(format!("worker failed: {status}").into());
    }
    let summary: Value = serde_json::from_slice(&stdout)?;
    Ok(Measure {
        wall,
        wire: summary["wire_bytes"].as_u64().unwrap_or(0),
        client_rss_kib: read_kib(&rss_file),
        server_rss_kib: agent_rss,
        summary,
    })
}

fn run_rsync(keys: &Keys, sshd: &Sshd, src: &Path, dest: &Path, tmp: &Path) -> Result<Measure> {
    let client_rss = tmp.join("rsync-client.rss");
    let server_rss = tmp.join("rsync-server.rss");
    let self_exe = std::env::current_exe()?;
    let known_hosts = tmp.join("known_hosts");
    let host_pub = fs::read_to_string(keys.path("sshd_host.pub"))?;
    fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {host_pub}", sshd.port),
    )?;
    let ssh = format!(
        "ssh -F /dev/null -p {} -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
        sshd.port,
        keys.path("client").display(),
        known_hosts.display()
    );
    let mut cmd = Command::new(&self_exe);
    cmd.arg("--measure").arg(&client_rss).arg("--").arg("rsync");
    cmd.args(["-a", "--delete", "--stats", "-e", &ssh]);
    cmd.arg(format!(
        "--rsync-path={} --measure {} -- rsync",
        self_exe.display(),
        server_rss.display()
    ));
    cmd.arg(format!("root@127.0.0.1:{}/", src.display()));
    cmd.arg(format!("{}/", dest.display()));
    let (wall, status, stdout) = timed(&mut cmd)?;
    if !status.success() {
        return Err(format!("rsync failed: {status}").into());
    }
    let text = String::from_utf8_lossy(&stdout);
    let stat = |label: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.split_whitespace().next().unwrap_or("0").replace(',', ""))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Measure {
        wall,
        wire: stat("Total bytes sent:") + stat("Total bytes received:"),
        client_rss_kib: read_kib(&client_rss),
        server_rss_kib: read_kib(&server_rss),
        summary: json!({}),
    })
}

/// Same regular files with the same sizes at the same relative paths.
fn check_same_listing(src: &Path, dest: &Path, who: &str) -> Result<()> {
    let rel = |root: &Path| -> Result<Vec<(PathBuf, u64)>> {
        Ok(regular_files(root)?
            .into_iter()
            .map(|(p, s)| (p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p), s))
            .collect())
    };
    if rel(src)? != rel(dest)? {
        return Err(format!("{who}: destination {} differs from source", dest.display()).into());
    }
    Ok(())
}

fn hash_file(path: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut fs::File::open(path)?, &mut h)?;
    Ok(h.finalize().to_hex().to_string())
}

struct CaseResult {
    name: &'static str,
    ours: Measure,
    rsync: Measure,
    /// Wall seconds of every round, (ours, rsync).
    walls: Vec<(f64, f64)>,
}

/// The median-wall run of `runs`, with the largest peak RSS of all of them.
fn median(mut runs: Vec<Measure>) -> Measure {
    let rss = |f: fn(&Measure) -> u64, runs: &[Measure]| runs.iter().map(f).max().unwrap_or(0);
    let (client, server) = (
        rss(|m| m.client_rss_kib, &runs),
        rss(|m| m.server_rss_kib, &runs),
    );
    runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    let mut m = runs.swap_remove(runs.len() / 2);
    m.client_rss_kib = client;
    m.server_rss_kib = server;
    m
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

fn run_bench(opts: &Opts) -> Result<()> {
    let (base, big) = ensure_dataset(&opts.out.join("data"))?;
    let work = opts.out.join("work");
    let tmp = opts.out.join("tmp");
    fs::create_dir_all(&work)?;
    fs::create_dir_all(&tmp)?;
    let keys = Keys::create(&opts.out.join("ssh"))?;
    let sshd = Sshd::start(&keys, &tmp)?;

    let src = work.join("src");
    let bigsrc = work.join("bigsrc");
    let (d_ours, d_rsync) = (work.join("dest-ours"), work.join("dest-rsync"));
    let (b_ours, b_rsync) = (work.join("big-ours"), work.join("big-rsync"));
    let volumes: Vec<(&str, &Path)> = vec![("bench", &src), ("big", &bigsrc)];

    fs::create_dir_all(&bigsrc)?;
    // Destinations of earlier rounds are set aside and deleted after the last round: ext4
    // allocates inodes slowly for ~30 s after a mass deletion (it skips recently freed
    // ones, reading inode tables to find them), which would slow whichever tool ran first
    // after the deletion by up to 2.5x. A real first sync goes to a fresh volume.
    let trash = work.join("trash");
    let wants = |c: &str| opts.cases.iter().any(|x| x == c);
    // samples[case] = (ours, rsync) runs
    let mut samples: Vec<(&'static str, Vec<Measure>, Vec<Measure>)> = Vec::new();
    let mut pair = |round: usize,
                    name: &'static str,
                    volume: &str,
                    s: &Path,
                    dours: &Path,
                    drs: &Path|
     -> Result<()> {
        // the tools take turns going first: whoever follows a deletion or a big write
        // pays for the kernel's cleanup of it
        let mut ours = None;
        let mut rsync = None;
        for turn in 0..2 {
            nix::unistd::sync();
            if (turn + round).is_multiple_of(2) {
                println!("round {round} case {name}: ours...");
                ours = Some(run_ours(opts, &keys, &volumes, volume, dours, &tmp)?);
            } else {
                println!("round {round} case {name}: rsync...");
                rsync = Some(run_rsync(&keys, &sshd, s, drs, &tmp)?);
            }
        }
        check_same_listing(s, dours, "ours")?;
        check_same_listing(s, drs, "rsync")?;
        let (Some(ours), Some(rsync)) = (ours, rsync) else {
            return Err("a tool did not run".into());
        };
        match samples.iter_mut().find(|c| c.0 == name) {
            Some(c) => {
                c.1.push(ours);
                c.2.push(rsync);
            }
            None => samples.push((name, vec![ours], vec![rsync])),
        }
        Ok(())
    };

    for round in 0..opts.rounds {
        if wants("initial") || wants("nochange") || wants("change1pct") {
            // the same starting point every round: the data set, empty destinations
            copy_tree_linked(&base, &src)?;
            for d in [&d_ours, &d_rsync] {
                set_aside(d, &trash)?;
                fs::create_dir_all(d)?;
            }
            pair(round, "initial", "bench", &src, &d_ours, &d_rsync)?;
            pair(round, "nochange", "bench", &src, &d_ours, &d_rsync)?;
            if wants("change1pct") {
                let edited = mutate_one_percent(&src)?;
                println!("mutated: {} MiB of edits", edited / MIB);
                pair(round, "change1pct", "bench", &src, &d_ours, &d_rsync)?;
            }
        }
        if wants("bigfile") {
            println!("round {round}: preparing the 2 GiB case...");
            let orig = big.join("big.bin");
            copy_file(&orig, &b_ours.join("big.bin"))?;
            copy_file(&orig, &b_rsync.join("big.bin"))?;
            fs::copy(&orig, bigsrc.join("big.bin"))?;
            scatter_edit(
                &bigsrc.join("big.bin"),
                10 * MIB,
                16 * 1024,
                &mut Rng(SEED ^ 0x2),
            )?;
            pair(round, "bigfile", "big", &bigsrc, &b_ours, &b_rsync)?;
            let want = hash_file(&bigsrc.join("big.bin"))?;
            for d in [&b_ours, &b_rsync] {
                if hash_file(&d.join("big.bin"))? != want {
                    return Err(format!("{}: big file differs from source", d.display()).into());
                }
            }
        }
    }
    let _ = fs::remove_dir_all(&trash);
    let results: Vec<CaseResult> = samples
        .into_iter()
        .map(|(name, ours, rsync)| {
            let walls = ours
                .iter()
                .zip(&rsync)
                .map(|(o, r)| (o.wall, r.wall))
                .collect();
            CaseResult {
                name,
                ours: median(ours),
                rsync: median(rsync),
                walls,
            }
        })
        .collect();
    report(opts, &results)
}

fn report(opts: &Opts, results: &[CaseResult]) -> Result<()> {
    println!();
    println!(
        "{:<11} {:>9} {:>9} {:>6} | {:>13} {:>13} {:>6} | {:>9} {:>9} {:>9} {:>9}",
        "case",
        "ours s",
        "rsync s",
        "ratio",
        "ours wire",
        "rsync wire",
        "ratio",
        "worker",
        "agent",
        "rsync cl",
        "rsync srv"
    );
    let mut cases = Vec::new();
    for r in results {
        let (wall_r, wire_r) = (
            ratio(r.ours.wall, r.rsync.wall),
            ratio(r.ours.wire as f64, r.rsync.wire as f64),
        );
        println!(
            "{:<11} {:>9.2} {:>9.2} {:>6.2} | {:>13} {:>13} {:>6.2} | {:>8}M {:>8}M {:>8}M {:>8}M",
            r.name,
            r.ours.wall,
            r.rsync.wall,
            wall_r,
            r.ours.wire,
            r.rsync.wire,
            wire_r,
            r.ours.client_rss_kib / 1024,
            r.ours.server_rss_kib / 1024,
            r.rsync.client_rss_kib / 1024,
            r.rsync.server_rss_kib / 1024
        );
        let wall_target = if r.name == "bigfile" { 0.7 } else { 0.5 };
        cases.push(json!({
            "case": r.name,
            "wall_seconds_per_round": {
                "ours": r.walls.iter().map(|w| w.0).collect::<Vec<_>>(),
                "rsync": r.walls.iter().map(|w| w.1).collect::<Vec<_>>(),
            },
            "ours": {
                "wall_seconds": r.ours.wall, "wire_bytes": r.ours.wire,
                "peak_rss_worker_kib": r.ours.client_rss_kib, "peak_rss_agent_kib": r.ours.server_rss_kib,
                "summary": r.ours.summary,
            },
            "rsync": {
                "wall_seconds": r.rsync.wall, "wire_bytes": r.rsync.wire,
                "peak_rss_client_kib": r.rsync.client_rss_kib, "peak_rss_server_kib": r.rsync.server_rss_kib,
            },
            "ratios": {
                "wall": wall_r, "wire": wire_r,
                "rss_worker_vs_rsync_client": ratio(r.ours.client_rss_kib as f64, r.rsync.client_rss_kib as f64),
                "rss_agent_vs_rsync_server": ratio(r.ours.server_rss_kib as f64, r.rsync.server_rss_kib as f64),
            },
            "targets": {
                "wall_ratio_max": wall_target,
                "wall_ok": wall_r <= wall_target,
                "wire_ratio_max": if r.name == "initial" || r.name == "nochange" { Value::Null } else { json!(1.2) },
                "wire_ok": r.name == "initial" || r.name == "nochange" || wire_r <= 1.2,
                "rss_ok": r.name != "bigfile" || (r.ours.client_rss_kib <= 300 * 1024 && r.ours.server_rss_kib <= 300 * 1024),
            },
        }));
    }
    let doc = json!({
        "streams": opts.streams,
        "rounds": opts.rounds,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cases": cases,
        "notes": "wall: median of the rounds, peak RSS: largest of the rounds; wire bytes are protocol payload bytes (ours: worker summary; rsync: --stats sent+received); RSS in KiB",
    });
    println!("\nper round, wall seconds (ours / rsync):");
    for r in results {
        let rounds: Vec<String> = r
            .walls
            .iter()
            .map(|(o, s)| format!("{o:.2} / {s:.2}"))
            .collect();
        println!("{:<11} {}", r.name, rounds.join("   "));
    }
    let path = opts.out.join("dataplane.json");
    fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    println!("\nwrote {}", path.display());
    Ok(())
}
