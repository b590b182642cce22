//! The nginx stage of `cargo xtask conformance`: a real nginx (the Debian package) as a
//! WebSocket reverse proxy with a short `proxy_read_timeout` in front of two `sonar serve`
//! processes, and `sonar client` processes connecting through it, all on loopback.
//!
//! - spread: 8 clients through nginx (round robin) reach both backends (each backend's
//!   `connection opened` log lines are counted; backend A runs `--reuse-port --threads 2`);
//! - idle: the clients stay silent for twice `proxy_read_timeout` while the backends'
//!   keepalive pings flow, then every one still echoes; a control client through a backend
//!   without keepalive is cut by nginx after `proxy_read_timeout`, which shows the timeout is
//!   real;
//! - backend down: one backend is killed; exactly its clients see their connection end
//!   (1006: nginx closes the client side) within a bounded time, the others keep echoing;
//! - restart: the backend comes back on the same port and new connections reach it again
//!   (`max_fails=1 fail_timeout=1s` bounds how long nginx may avoid it).
//!
//! nginx runs as one process (`master_process off`, so killing the guard leaves no worker
//! behind) with its own config, logs, pid and temp files under `target/conformance/nginx/`.
//! Without nginx the stage is skipped with a note, except under `CI`, where it fails.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sonar_testkit::{ChildGuard, LineReader, text_of};

use crate::root;

/// nginx's `proxy_read_timeout` (and `proxy_send_timeout`), in seconds.
const PROXY_TIMEOUT_SECS: u64 = 3;
const PROXY_TIMEOUT: Duration = Duration::from_secs(PROXY_TIMEOUT_SECS);
/// The backends' keepalive: a ping after this much inbound silence (well under the proxy's
/// timeout), and this long for its pong.
const PING_INTERVAL: &str = "1";
const PING_TIMEOUT: &str = "1";
/// nginx's `fail_timeout` for a backend (`max_fails=1`).
const FAIL_TIMEOUT: Duration = Duration::from_secs(1);
/// Clients connected through nginx at first.
const CLIENTS: usize = 8;
/// New clients after the restart.
const LATE_CLIENTS: usize = 4;
/// How long the clients stay silent: twice the proxy's timeout.
const IDLE: Duration = Duration::from_secs(2 * PROXY_TIMEOUT_SECS);
/// Slack on top of every deadline derived from the proxy's timeout.
const MARGIN: Duration = Duration::from_secs(2);
/// Bound on a process's first line, an echo, and nginx's start.
const LINE_LIMIT: Duration = Duration::from_secs(15);
/// How often a bounded wait looks again (nginx's port, a client's exit).
const POLL: Duration = Duration::from_millis(20);
/// Attempts to start nginx on a port picked free (another process may take it meanwhile).
const START_TRIES: usize = 3;

/// Runs the stage; returns the problems (empty: all green) after printing its summary.
pub(crate) fn nginx(sonar: &Path) -> Vec<String> {
    let started = Instant::now();
    let Some(binary) = find_nginx() else {
        if std::env::var_os("CI").is_some() {
            return vec![
                "nginx: not found (CI is set): install the Debian package `nginx` (.ci/run \
                 does) or point NGINX at the binary"
                    .into(),
            ];
        }
        println!("\nnginx: not found; skipping (apt-get install nginx to run this stage)");
        return Vec::new();
    };
    let dir = root().join("target").join("conformance").join("nginx");
    let mut lines = Vec::new();
    let outcome = run(sonar, &binary, &dir, &mut lines);
    println!("\nnginx reverse proxy summary:");
    for line in &lines {
        println!("  {line}");
    }
    println!("  nginx stage took {:.1}s", started.elapsed().as_secs_f64());
    match outcome {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("nginx: {e}")],
    }
}

/// `$NGINX`, else `nginx` on `PATH`, else Debian's `/usr/sbin/nginx` (not on every `PATH`).
fn find_nginx() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NGINX") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
}

/// The four steps, each adding one summary line; the first problem ends the stage.
fn run(sonar: &Path, binary: &Path, dir: &Path, lines: &mut Vec<String>) -> Result<(), String> {
    let keepalive = [
        "--ping-interval",
        PING_INTERVAL,
        "--ping-timeout",
        PING_TIMEOUT,
    ];
    // Backend A is itself scaled out on its host: two accept loops on one port.
    let reuse_port = [&keepalive[..], &["--reuse-port", "--threads", "2"]].concat();
    let mut a = Backend::start(sonar, "127.0.0.1:0", &reuse_port)?;
    let mut b = Backend::start(sonar, "127.0.0.1:0", &keepalive)?;
    // The control: a backend without keepalive, behind a location of its own.
    let quiet = Backend::start(sonar, "127.0.0.1:0", &["--ping-interval", "0"])?;
    let proxy = Nginx::start(binary, dir, [a.port, b.port], quiet.port)?;
    let url = format!("ws://127.0.0.1:{}/", proxy.port);

    // (a) Spread: one client at a time (each echoes before the next starts), round robin.
    let mut clients = connect_echoing(sonar, &url, CLIENTS, "hello")?;
    let [on_a, on_b] = count_opened([&mut a, &mut b], CLIENTS)?;
    if on_a == 0 || on_b == 0 {
        return Err(format!(
            "{CLIENTS} connections through nginx did not reach both backends: {on_a} on A, \
             {on_b} on B"
        ));
    }
    lines.push(format!(
        "spread        {CLIENTS} connections through nginx: {on_a} on backend A (--reuse-port, \
         2 loops), {on_b} on backend B  ok"
    ));

    // (b) Idle for twice the proxy's timeout; the control is cut after one.
    let mut control = Client::start(sonar, &format!("ws://127.0.0.1:{}/quiet", proxy.port))?;
    control.echo("control")?;
    let idle_from = Instant::now();
    if !control.wait_end(IDLE) {
        return Err(format!(
            "a client of a backend without keepalive was still connected after {IDLE:?} of \
             silence: nginx's proxy_read_timeout {PROXY_TIMEOUT:?} did not apply"
        ));
    }
    let cut_after = idle_from.elapsed();
    if cut_after + Duration::from_millis(500) < PROXY_TIMEOUT {
        return Err(format!(
            "the control client ended after {cut_after:?}, before proxy_read_timeout \
             {PROXY_TIMEOUT:?}: {}",
            control.stderr()
        ));
    }
    thread::sleep(IDLE.saturating_sub(idle_from.elapsed()));
    for (i, client) in clients.iter_mut().enumerate() {
        if client.ended() {
            return Err(format!(
                "client {i} lost its connection while idle for {IDLE:?} with keepalive pings \
                 every {PING_INTERVAL} s: {}",
                client.stderr()
            ));
        }
        client.echo(&format!("after idle {i}"))?;
    }
    lines.push(format!(
        "idle          {:.1} s silent (proxy_read_timeout {PROXY_TIMEOUT_SECS} s, pings every \
         {PING_INTERVAL} s): {CLIENTS}/{CLIENTS} echoed; without keepalive nginx cut the \
         control after {:.1} s  ok",
        IDLE.as_secs_f64(),
        cut_after.as_secs_f64()
    ));

    // (c) Backend B dies: exactly its clients end, within the proxy's timeout and a margin
    // (its kernel closes the sockets at once, so nginx usually passes the end on at once).
    let port_b = b.port;
    drop(b);
    let killed_at = Instant::now();
    let limit = PROXY_TIMEOUT + MARGIN;
    let mut ended: Vec<usize> = Vec::new();
    for _ in 0..=limit.as_millis() / POLL.as_millis() {
        ended = (0..clients.len()).filter(|&i| clients[i].ended()).collect();
        if ended.len() >= on_b || killed_at.elapsed() >= limit {
            break;
        }
        thread::sleep(POLL);
    }
    let took = killed_at.elapsed();
    if ended.len() != on_b {
        return Err(format!(
            "backend B (port {port_b}) had {on_b} clients; {} connections ended within \
             {limit:?} of killing it",
            ended.len()
        ));
    }
    for &i in &ended {
        let err = clients[i].stderr();
        if !err.contains("1006") {
            return Err(format!(
                "client {i} of the killed backend ended without reporting 1006: {err}"
            ));
        }
    }
    for (i, client) in clients.iter_mut().enumerate() {
        if !ended.contains(&i) {
            client.echo(&format!("after the kill {i}"))?;
        }
    }
    lines.push(format!(
        "backend down  B killed: its {on_b} clients saw 1006 within {:.2} s (bound {:.0} s), \
         the {on_a} of A still echo  ok",
        took.as_secs_f64(),
        limit.as_secs_f64()
    ));

    // (d) B comes back on its port; once nginx's fail_timeout is over, new connections
    // reach it.
    let mut b = Backend::start(sonar, &format!("127.0.0.1:{port_b}"), &keepalive)?;
    thread::sleep(FAIL_TIMEOUT + Duration::from_millis(200));
    let late = connect_echoing(sonar, &url, LATE_CLIENTS, "late")?;
    let [late_a, late_b] = count_opened([&mut a, &mut b], LATE_CLIENTS)?;
    if late_b == 0 {
        return Err(format!(
            "after restarting backend B on port {port_b}, none of {LATE_CLIENTS} new \
             connections reached it (A got {late_a})"
        ));
    }
    lines.push(format!(
        "restart       B back on port {port_b}: {late_b} of {LATE_CLIENTS} new connections \
         reached it, {late_a} A  ok"
    ));
    drop((late, clients, control, proxy, quiet));
    Ok(())
}

/// Reads the backends' logs until `more` new `connection opened` lines have come in all
/// (bounded by [`LINE_LIMIT`]); returns how many each logged.
fn count_opened<const N: usize>(
    mut backends: [&mut Backend; N],
    more: usize,
) -> Result<[usize; N], String> {
    let deadline = Instant::now() + LINE_LIMIT;
    let mut counts = [0; N];
    while counts.iter().sum::<usize>() < more {
        if Instant::now() >= deadline {
            return Err(format!(
                "the backends logged {counts:?} of {more} `connection opened` lines within \
                 {LINE_LIMIT:?}"
            ));
        }
        for (backend, count) in backends.iter_mut().zip(counts.iter_mut()) {
            // Lines already in the pipe come at once; then look at the next backend.
            while let Ok(line) = backend.log.next_line(POLL) {
                if line.contains("connection opened") {
                    *count += 1;
                }
            }
        }
    }
    Ok(counts)
}

/// A `sonar serve` behind nginx, killed when dropped.
struct Backend {
    _guard: ChildGuard,
    port: u16,
    /// Its stderr (the log, RUST_LOG=info).
    log: LineReader,
}

impl Backend {
    fn start(sonar: &Path, addr: &str, extra: &[&str]) -> Result<Backend, String> {
        let mut guard = ChildGuard::spawn(
            Command::new(sonar)
                .args(["serve", "--addr", addr])
                .args(extra)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .map_err(|e| format!("could not start {}: {e}", sonar.display()))?;
        let out = LineReader::spawn(guard.stdout.take().ok_or("no stdout from sonar serve")?);
        let log = LineReader::spawn(guard.stderr.take().ok_or("no stderr from sonar serve")?);
        let line = out
            .next_line(LINE_LIMIT)
            .map_err(|e| format!("sonar serve --addr {addr} printed no line: {e}"))?;
        out.drain();
        let port = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .map(|a| a.port())
            .ok_or_else(|| format!("sonar serve printed {line:?}, not `listening on ADDR`"))?;
        Ok(Backend {
            _guard: guard,
            port,
            log,
        })
    }
}

/// `n` clients through nginx, started one at a time, each echoing `"{label} {i}"` before the
/// next starts (so that nginx's round robin alternates).
fn connect_echoing(sonar: &Path, url: &str, n: usize, label: &str) -> Result<Vec<Client>, String> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = Client::start(sonar, url)?;
        client.echo(&format!("{label} {i}"))?;
        clients.push(client);
    }
    Ok(clients)
}

/// A `sonar client` through nginx (no keepalive of its own: only the server's pings keep
/// the proxy's connection busy), killed when dropped.
struct Client {
    guard: ChildGuard,
    stdin: Option<ChildStdin>,
    out: LineReader,
    err: Option<JoinHandle<String>>,
}

impl Client {
    fn start(sonar: &Path, url: &str) -> Result<Client, String> {
        let mut guard = ChildGuard::spawn(
            Command::new(sonar)
                .args(["client", url, "--ping-interval", "0"])
                .env("RUST_LOG", "info")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .map_err(|e| format!("could not start sonar client: {e}"))?;
        let stdin = guard.stdin.take();
        let out = LineReader::spawn(guard.stdout.take().ok_or("no stdout from sonar client")?);
        let err = guard.stderr.take().map(text_of);
        Ok(Client {
            guard,
            stdin,
            out,
            err,
        })
    }

    /// Sends `text` and waits (bounded) for it to come back.
    fn echo(&mut self, text: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the client's stdin is closed")?;
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to sonar client: {e}"))?;
        match self.out.next_line(LINE_LIMIT) {
            Ok(line) if line == text => Ok(()),
            Ok(line) => Err(format!("sent {text:?} through nginx, got {line:?}")),
            Err(e) => Err(format!(
                "no echo of {text:?} through nginx: {e}; client stderr: {}",
                self.stderr()
            )),
        }
    }

    /// Whether the client has exited (its connection ended).
    fn ended(&mut self) -> bool {
        matches!(self.guard.try_wait(), Ok(Some(_)))
    }

    /// Waits at most `limit` for the client to exit.
    fn wait_end(&mut self, limit: Duration) -> bool {
        matches!(self.guard.wait_timeout(limit), Ok(Some(_)))
    }

    /// What the client wrote to stderr, once it has exited (else a note saying it runs).
    fn stderr(&mut self) -> String {
        if !self.ended() {
            return "(still running)".into();
        }
        let text = self
            .err
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        text.trim().replace('\n', " | ")
    }
}

/// nginx as one process with a generated config, killed when dropped.
struct Nginx {
    _guard: ChildGuard,
    port: u16,
}

impl Nginx {
    /// Starts nginx on a free port in front of the `backends` (location `/`) and the
    /// `quiet` backend (location `/quiet`); waits (bounded) until it accepts connections.
    fn start(binary: &Path, dir: &Path, backends: [u16; 2], quiet: u16) -> Result<Nginx, String> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut last = String::new();
        for _ in 0..START_TRIES {
            let port = free_port()?;
            let conf = dir.join("nginx.conf");
            fs::write(&conf, config(dir, port, backends, quiet))
                .map_err(|e| format!("{}: {e}", conf.display()))?;
            let error_log = dir.join("error.log");
            let _ = fs::remove_file(&error_log);
            let mut guard = ChildGuard::spawn(
                Command::new(binary)
                    .arg("-p")
                    .arg(dir)
                    .arg("-e")
                    .arg(&error_log)
                    .arg("-c")
                    .arg(&conf)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            )
            .map_err(|e| format!("could not start {}: {e}", binary.display()))?;
            let stderr = guard.stderr.take().map(text_of);
            let deadline = Instant::now() + LINE_LIMIT;
            for _ in 0..=LINE_LIMIT.as_millis() / POLL.as_millis() {
                if let Ok(Some(status)) = guard.try_wait() {
                    let said = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
                    let log = fs::read_to_string(&error_log).unwrap_or_default();
                    last = format!(
                        "nginx exited with {status}: {} {}",
                        said.trim(),
                        tail(&log, 5)
                    );
                    break;
                }
                if TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), POLL)
                    .is_ok()
                {
                    return Ok(Nginx {
                        _guard: guard,
                        port,
                    });
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "nginx did not accept on port {port} within {LINE_LIMIT:?}"
                    ));
                }
                thread::sleep(POLL);
            }
        }
        Err(last)
    }
}

/// A port that was free a moment ago (the kernel picks it; the socket is closed again).
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot pick a free port: {e}"))
}

/// The last `n` lines of `text`, on one line.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// nginx's config: one process, everything under `dir`, a WebSocket reverse proxy on `port`.
fn config(dir: &Path, port: u16, backends: [u16; 2], quiet: u16) -> String {
    let d = dir.display();
    let [a, b] = backends;
    let t = PROXY_TIMEOUT_SECS;
    let fail = FAIL_TIMEOUT.as_secs();
    format!(
        "# Generated by `cargo xtask conformance` (xtask/src/nginx.rs); rewritten every run.
worker_processes 1;
daemon off;
master_process off;
error_log {d}/error.log info;
pid {d}/nginx.pid;
events {{
    worker_connections 256;
}}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp-body;
    proxy_temp_path {d}/tmp-proxy;
    fastcgi_temp_path {d}/tmp-fastcgi;
    uwsgi_temp_path {d}/tmp-uwsgi;
    scgi_temp_path {d}/tmp-scgi;

    # Round robin over the two backends; one failure takes a backend out for {fail} s only.
    upstream sonar {{
        server 127.0.0.1:{a} max_fails=1 fail_timeout={fail}s;
        server 127.0.0.1:{b} max_fails=1 fail_timeout={fail}s;
    }}
    # The control: a backend without keepalive pings.
    upstream quiet {{
        server 127.0.0.1:{quiet};
    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection \"upgrade\";
        proxy_set_header Host $host;
        proxy_connect_timeout 1s;
        proxy_read_timeout {t}s;
        proxy_send_timeout {t}s;
        location / {{
            proxy_pass http://sonar;
        }}
        location /quiet {{
            proxy_pass http://quiet;
        }}
    }}
}}
"
    )
}
